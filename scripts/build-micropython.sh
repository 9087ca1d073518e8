#!/usr/bin/env bash
# Build MicroPython's unix port as a 32-bit binary (the ESP8266's word size) with asyncio and
# umqtt.simple frozen in (devices/virtual_huzzah/manifest.py), plus mpy-cross of the same version.
#
#   scripts/build-micropython.sh OUT_DIR
#
# Environment:
#   MICROPYTHON_SRC  a source tarball (.tar.gz / .tar.xz), an unpacked source tree, or a URL of a
#                    tarball (downloaded once into .cache/downloads/). Default: the v1.28.0 release.
#   UMQTT_DIR        directory holding umqtt/simple.py (default: .cache/micropython-lib, `make setup`)
#
# Output: OUT_DIR/micropython, OUT_DIR/mpy-cross, OUT_DIR/build.log (compiler output) and
# OUT_DIR/.build-stamp (the inputs: nothing is rebuilt while they stay the same).
# Relative paths in arguments and environment are relative to the caller's directory.
# Installs gcc-multilib (and make, gcc, python3, xz-utils if missing) with apt-get when needed.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")/.."

caller_dir=$OLDPWD
repo=$PWD
me=build-micropython
MICROPYTHON_VERSION=1.28.0
DEFAULT_SRC=https://github.com/micropython/micropython/releases/download/v$MICROPYTHON_VERSION/micropython-$MICROPYTHON_VERSION.tar.xz
MANIFEST=$repo/devices/virtual_huzzah/manifest.py
FROZEN="asyncio, umqtt.simple, ntptime"
# Submodules that are not needed (and not in a release tarball) are switched off.
UNIX_FLAGS=(VARIANT=standard MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_SSL_MBEDTLS=0)

say() { echo "$me: $*"; }
die() { echo "$me: error: $*" >&2; exit 1; }
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller_dir/$1" ;; esac; }

if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: scripts/build-micropython.sh OUT_DIR  (env: MICROPYTHON_SRC, UMQTT_DIR)"; fi
out=$(abspath "$1")
src=${MICROPYTHON_SRC:-$DEFAULT_SRC}
case $src in http://* | https://*) ;; *) src=$(abspath "$src") ;; esac
umqtt_dir=$(abspath "${UMQTT_DIR:-$repo/.cache/micropython-lib}")
[ -f "$umqtt_dir/umqtt/simple.py" ] ||
  die "no umqtt/simple.py in $umqtt_dir: run \`make setup\` or set UMQTT_DIR to the directory holding umqtt/simple.py"
[ -f "$MANIFEST" ] || die "missing $MANIFEST"
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/build.log
stamp=$out/.build-stamp

# run DESCRIPTION COMMAND...: one line on stdout, the command's output to the log; on failure the
# log's last 30 lines and its path. The first step of a run starts a new log.
log_started=
run() {
  local what=$1
  shift
  say "$what"
  if [ -z "$log_started" ]; then : >"$log"; log_started=1; fi
  printf '\n=== %s\n+ %s\n' "$what" "$*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "$me: FAILED: $what. Last 30 lines of the log:" >&2
    tail -n 30 "$log" >&2
    echo "$me: full log: $log" >&2
    exit 1
  fi
}

work=
cleanup() { if [ -n "$work" ]; then rm -rf "$work"; fi; }
trap cleanup EXIT

# --- the source: a URL is fetched once into .cache/downloads --------------------------------------
download() {
  if command -v curl >/dev/null; then curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -q -O "$2" "$1"
  else python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"
  fi
}
case $src in
  http://* | https://*)
    cached=$repo/.cache/downloads/$(basename "$src")
    if [ ! -f "$cached" ]; then
      say "downloading $src"
      : >"$log"
      log_started=1
      part=$(mktemp "${TMPDIR:-/tmp}/build-micropython.download.XXXXXX")
      if ! download "$src" "$part" >>"$log" 2>&1; then
        rm -f "$part"
        die "cannot download $src ($(tail -n 1 "$log")). Set MICROPYTHON_SRC to a local micropython-$MICROPYTHON_VERSION source tarball or unpacked source tree. Log: $log"
      fi
      mkdir -p "$(dirname "$cached")"
      mv "$part" "$cached"
    fi
    src=$cached
    ;;
esac

# Files of an unpacked tree that are inputs: not .git, not earlier build output.
tree_files() {
  (cd "$1" && find . \( -path ./.git -o -path ./mpy-cross/build -o -path './ports/*/build*' \) -prune \
    -o -type f -print0 | LC_ALL=C sort -z)
}
if [ -d "$src" ]; then
  for f in py/mkrules.mk ports/unix/Makefile mpy-cross/Makefile; do
    [ -f "$src/$f" ] || die "$src is not a MicroPython source tree (no $f)"
  done
  src_sha=$(tree_files "$src" | (cd "$src" && xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
  src_kind="tree"
elif [ -f "$src" ]; then
  case $src in *.tar.gz | *.tgz | *.tar.xz | *.txz | *.tar) ;; *) die "$src: expected a .tar.gz or .tar.xz tarball or a directory" ;; esac
  src_sha=$(sha256sum "$src" | cut -d' ' -f1)
  src_kind="tarball"
else
  die "MICROPYTHON_SRC: no such file or directory: $src"
fi

# --- up to date? ----------------------------------------------------------------------------------
stamp_text=$(
  echo "micropython-src $src_kind sha256 $src_sha"
  echo "manifest sha256 $(sha256sum <"$MANIFEST" | cut -d' ' -f1)"
  echo "umqtt/simple.py sha256 $(sha256sum <"$umqtt_dir/umqtt/simple.py" | cut -d' ' -f1)"
  echo "ntptime.py sha256 $(sha256sum <"$repo/devices/virtual_huzzah/vm/ntptime.py" | cut -d' ' -f1)"
  echo "unix port: 32-bit, ${UNIX_FLAGS[*]}"
)
if [ -x "$out/micropython" ] && [ -x "$out/mpy-cross" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ]; then
  say "up to date: $out/micropython and $out/mpy-cross (inputs unchanged, see $stamp)"
  exit 0
fi
start=$SECONDS

# --- tools ----------------------------------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else SUDO=(missing-sudo); fi
apt_updated=
apt_install() {
  [ "${SUDO[*]}" != missing-sudo ] || die "need root or sudo to install $* with apt-get"
  command -v apt-get >/dev/null || die "$* missing and no apt-get: install them, then run again"
  if [ -z "$apt_updated" ]; then run "apt-get update" "${SUDO[@]}" apt-get update -q; apt_updated=1; fi
  run "installing $* with apt-get" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$@"
}
missing=()
command -v make >/dev/null || missing+=(make)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v python3 >/dev/null || missing+=(python3)
case $src in *xz) command -v xz >/dev/null || missing+=(xz-utils) ;; esac
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# A 32-bit build: with -m32 (MICROPY_FORCE_32BIT=1) on an x86-64 host, natively on a 32-bit host.
force32=()
if gcc -dM -E -x c /dev/null | grep -q '__SIZEOF_POINTER__ 4'; then
  say "compiler: gcc is 32-bit natively"
else
  can_m32() { echo 'int main(){return 0;}' | gcc -m32 -x c - -o /dev/null >/dev/null 2>&1; }
  if ! can_m32; then
    case $(uname -m) in
      x86_64 | amd64) apt_install gcc-multilib ;;
      *) die "gcc cannot build 32-bit programs here ($(uname -m)); a 32-bit build needs an x86-64 host (gcc-multilib) or a 32-bit userland" ;;
    esac
    can_m32 || die "gcc -m32 still cannot link a program after installing gcc-multilib"
  fi
  say "compiler: gcc -m32 works"
  force32=(MICROPY_FORCE_32BIT=1)
fi

# --- build in a scratch copy (never inside a git work tree: the version would come from git) -------
work=$(mktemp -d "${TMPDIR:-/tmp}/build-micropython.XXXXXX")
export GIT_CEILING_DIRECTORIES=$work
# shellcheck disable=SC2016 # bash -c scripts take their arguments as $1, $2, $3
if [ -d "$src" ]; then
  tree_files "$src" >"$work/files"
  run "copying the source tree $src" \
    bash -c 'mkdir -p "$3/src" && tar -C "$2" --null -T "$1" -cf - | tar -C "$3/src" -xf -' _ "$work/files" "$src" "$work"
else
  run "unpacking $(basename "$src") (sha256 ${src_sha:0:16}...)" bash -c 'mkdir -p "$2/src" && tar -C "$2/src" -xf "$1"' _ "$src" "$work"
fi
tops=("$work"/src/*)
if [ -f "$work/src/py/mkrules.mk" ]; then mp=$work/src
elif [ ${#tops[@]} -eq 1 ] && [ -f "${tops[0]}/py/mkrules.mk" ]; then mp=${tops[0]}
else die "$src does not hold a MicroPython source tree (expected one top folder with py/, ports/unix/)"
fi
version=$(sed -n 's/^#define MICROPY_VERSION_\(MAJOR\|MINOR\|MICRO\) \([0-9]*\)$/\2/p' "$mp/py/mpconfig.h" | paste -sd.)
[ "$version" = "$MICROPYTHON_VERSION" ] || say "warning: source is MicroPython $version, this script is made for $MICROPYTHON_VERSION"
# The build only checks that the micropython-lib submodule exists; the manifest does not use it.
mkdir -p "$mp/lib/micropython-lib"
[ -f "$mp/lib/micropython-lib/README.md" ] || touch "$mp/lib/micropython-lib/README.md"
# Reproducible build date: the source's own (unless the caller sets one).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$mp/py/mpconfig.h")}
# A clean make: nothing from a calling make (jobserver, its command-line variables) or the environment.
mk=(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u PROG -u VARIANT -u VARIANT_DIR -u FROZEN_MANIFEST make -j2)

# The scratch directory's name stays out of the binaries (debug info, hence the build ID).
nopath="CFLAGS_EXTRA=-ffile-prefix-map=$mp/="

run "building mpy-cross $version" "${mk[@]}" -C "$mp/mpy-cross" "$nopath"
run "building the unix port $version (32-bit, frozen: $FROZEN)" "${mk[@]}" -C "$mp/ports/unix" "$nopath" \
  "${force32[@]}" "${UNIX_FLAGS[@]}" FROZEN_MANIFEST="$MANIFEST" MICROPY_MANIFEST_UMQTT_DIR="$umqtt_dir"

# --- install --------------------------------------------------------------------------------------
rm -f "$stamp"
install -m 0755 "$mp/mpy-cross/build/mpy-cross" "$out/.mpy-cross.new"
install -m 0755 "$mp/ports/unix/build-standard/micropython" "$out/.micropython.new"
mv -f "$out/.mpy-cross.new" "$out/mpy-cross"
mv -f "$out/.micropython.new" "$out/micropython"
"$out/micropython" -c 'import sys, asyncio, umqtt.simple; assert sys.maxsize == 2147483647' >>"$log" 2>&1 ||
  die "the built $out/micropython fails its check (32-bit, asyncio, umqtt.simple). Log: $log"
printf '%s\n' "$stamp_text" >"$stamp"
say "done in $((SECONDS - start)) s: $out/micropython ($("$out/micropython" -c 'import sys; print(sys.version)'), 32-bit) and $out/mpy-cross"
