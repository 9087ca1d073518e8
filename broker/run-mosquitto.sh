#!/bin/sh
# The eclipse-mosquitto:2 container's command (docker-compose.yml): Mosquitto with the
# mosquitto.conf beside this file, reloaded (SIGHUP, mosquitto(8)) when the password file or the
# ACL beside it changes, so an account added with `sensornet broker add-account` works without a
# restart. SIGTERM/SIGINT (docker compose stop) reach Mosquitto, which saves its database and exits;
# this script exits with its status. POSIX sh (the image's busybox ash; also dash and bash).
set -o errexit -o nounset
if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi  # busybox ash and bash have it, dash before 0.5.13 not
cd "$(dirname "$0")/.."
conf_dir=$(cd "$(dirname "$0")" && pwd)
interval=${RELOAD_CHECK_S:-2}

stamp() { stat -c '%Y %s %i' "$conf_dir/passwd" "$conf_dir/acl" 2>/dev/null || true; }

mosquitto -c "$conf_dir/mosquitto.conf" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
seen=$(stamp)
while kill -0 "$pid" 2>/dev/null; do
  sleep "$interval" &
  wait $! || true  # a signal ends the wait at once; the trap has passed it on
  now=$(stamp)
  if [ "$now" != "$seen" ]; then
    seen=$now
    echo "run-mosquitto.sh: the password file or ACL changed: reloading"
    kill -HUP "$pid" 2>/dev/null || true
  fi
done
status=0
wait "$pid" || status=$?
exit "$status"
