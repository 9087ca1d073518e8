# Frozen-module manifest for the virtual board's MicroPython unix port (scripts/build-micropython.sh).
# It freezes the three things the ESP8266_GENERIC (2 MiB+) firmware freezes and the firmware needs:
# asyncio, umqtt.simple and ntptime (frozen, their code costs the heap nothing, as on the board).
#
# $(UMQTT_DIR) is a manifest path variable: the directory holding umqtt/simple.py (umqtt.simple
# 1.3.4, fetched by `make setup` into .cache/micropython-lib). Set it on make's command line:
#   make -C ports/unix FROZEN_MANIFEST=/abs/path/to/this/manifest.py MICROPY_MANIFEST_UMQTT_DIR=/abs/dir
# (py/mkrules.mk turns every MICROPY_MANIFEST_<NAME> make variable into $(<NAME>)).

# asyncio, as frozen into the ESP8266 firmware (the C part, _asyncio, is built in).
include("$(MPY_DIR)/extmod/asyncio")

# umqtt.simple only (a namespace package: micropython-lib ships no umqtt/__init__.py).
package("umqtt", files=("simple.py",), base_path="$(UMQTT_DIR)")

# ntptime: the model in vm/ntptime.py (micropython-lib's source is not among what the project can
# fetch); a path relative to this file (the manifest runs from its own directory).
module("ntptime.py", base_path="vm")
