#!/usr/bin/env bash
# Make a local certificate authority and a server certificate for the broker's TLS listeners
# (MQTT over TLS on 8883, WebSocket over TLS on 9001): broker/tls/ca.crt (give it to clients:
# mosquitto_sub --cafile, the bridge's ca_file, a browser's trusted authorities), ca.key (keep it;
# it signs the next server certificate), server.crt and server.key (the broker's).
#
# usage: scripts/make-tls.sh [--dir DIR] [--days N] [--force] [HOSTNAME...]
#   The certificate names localhost, 127.0.0.1, ::1, this machine's hostname (and HOSTNAME.local)
#   and every HOSTNAME given (a name or an IP address), as subjectAltNames.
#   An existing CA is reused; an existing server certificate is kept unless --force.
# Run as root, server.key is given to uid 1883 (the eclipse-mosquitto image's `mosquitto` user and
# the broker's systemd unit) with mode 0600; every key is 0600. openssl(1) does the work.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")/.."

dir=broker/tls days=825 force=0 names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=${2:?--dir needs a directory}; shift ;;
    --days) days=${2:?--days needs a number}; shift ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "make-tls.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) names+=("$1") ;;
  esac
  shift
done
command -v openssl >/dev/null || { echo "make-tls.sh: openssl not found: sudo apt-get install openssl" >&2; exit 1; }

umask 077
mkdir -p "$dir"
host=$(hostname)
sans="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:$host,DNS:$host.local"
for n in "${names[@]}"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then sans+=",IP:$n"; else sans+=",DNS:$n"; fi
done

if [ ! -f "$dir/ca.key" ] || [ ! -f "$dir/ca.crt" ]; then
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=sensornet local CA ($host)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  echo "make-tls.sh: made the local CA $dir/ca.crt"
fi
if [ -f "$dir/server.crt" ] && [ "$force" = 0 ]; then
  echo "make-tls.sh: $dir/server.crt exists; kept (--force makes a new one)"
else
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$host" -keyout "$dir/server.key" \
    -out "$dir/server.csr" 2>/dev/null
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -sha256 -out "$dir/server.crt" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$sans") 2>/dev/null
  rm -f "$dir/server.csr"
  echo "make-tls.sh: made $dir/server.crt for $sans"
fi
chmod 600 "$dir/ca.key" "$dir/server.key"
chmod 644 "$dir/ca.crt" "$dir/server.crt"
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then
  chown 1883:1883 "$dir/server.key" "$dir/server.crt"  # the broker's user (eclipse-mosquitto image, systemd unit)
fi
