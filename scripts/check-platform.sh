#!/usr/bin/env bash
# The first step of `make setup`: is this an OS and a Python that sensornet supports? (README, "Set-up")
#   Python 3.11 or newer (the bridge reads TOML with tomllib; pyproject.toml: requires-python >= 3.11)
#   Debian 12 (bookworm) or newer, Raspberry Pi OS Bookworm or newer, Ubuntu 24.04 or newer
#     (set-up installs mosquitto, mosquitto-clients and gcc-multilib with apt-get)
# usage: scripts/check-platform.sh [PYTHON]   (default python3; OS_RELEASE overrides /etc/os-release)
# Exit status 2, with a message naming what to change, on an unsupported Python (Raspberry Pi OS
# Bullseye's 3.9, say); a warning only on an older or another OS, where set-up may still work.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")/.."

python=${1:-python3}
os_release=${OS_RELEASE:-/etc/os-release}
fix="use Raspberry Pi OS Bookworm / Debian 12 (Python 3.11) or newer, or run \`make setup PYTHON=python3.11\` with a Python 3.11+ installed"

if ! command -v "$python" >/dev/null; then
  echo "setup: FAILED: $python not found: sensornet needs Python 3.11 or newer (sudo apt-get install python3)" >&2
  exit 2
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || version=unknown
major=${version%%.*} minor=${version#*.}
if [ "$version" = unknown ] || [ "$major" -lt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -lt 11 ]; }; then
  echo "setup: FAILED: $python is Python $version; sensornet needs Python 3.11 or newer: $fix" >&2
  exit 2
fi

id="" version_id="" pretty=""
if [ -r "$os_release" ]; then
  # shellcheck disable=SC1090
  id=$(. "$os_release"; echo "${ID:-}") version_id=$(. "$os_release"; echo "${VERSION_ID:-}")
  pretty=$(. "$os_release"; echo "${PRETTY_NAME:-$id $version_id}")
fi
case "$id" in
  debian|raspbian)
    if [ -n "$version_id" ] && [ "${version_id%%.*}" -lt 12 ]; then
      echo "setup: warning: $pretty is not supported (Debian/Raspberry Pi OS 12 Bookworm or newer are);" \
        "going on with Python $version" >&2
    fi ;;
  ubuntu)
    if [ -n "$version_id" ] && [ "${version_id%%.*}" -lt 24 ]; then
      echo "setup: warning: $pretty is not tested (Ubuntu 24.04 or newer is)" >&2
    fi ;;
  *)
    echo "setup: warning: ${pretty:-this system} is not tested (Debian 12+, Raspberry Pi OS Bookworm+, Ubuntu 24.04+ are);" \
      "set-up needs apt-get" >&2 ;;
esac
echo "setup: Python $version ($python) on ${pretty:-an unknown OS}: supported"
