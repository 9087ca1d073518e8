# sensornet: `make demo` runs the main job, `make test` runs the tests. Both set themselves up
# on a fresh Debian / Raspberry Pi OS machine: a virtual environment with the Python packages,
# the mosquitto binary (apt-get, when missing) and umqtt.simple for the virtual board.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o pipefail -o nounset -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# umqtt.simple for the virtual board (frozen into the standard ESP8266 firmware on a real board)
UMQTT_VERSION := 1.3.4
MPLIB := .cache/micropython-lib
DURATION ?=
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup test demo bench clean mosquitto

help:
	@echo "make demo [DURATION=30]   broker + three virtual Feather Huzzahs + bridge + endpoint"
	@echo "make test                 the test suite (pytest) on real parts"
	@echo "make bench                benchmarks: firmware heap use on the virtual board, bridge throughput"
	@echo "make setup                only the set-up both of them do"

setup: $(VENV)/.installed $(MPLIB)/umqtt/simple.py mosquitto

$(VENV)/.installed: pyproject.toml
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3 python3-venv python3-pip; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

mosquitto:
	@if ! { command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null || ! command -v mosquitto_sub >/dev/null; then \
	  echo "installing mosquitto and mosquitto-clients with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients; fi

# pip downloads the sdist but cannot build it (no setup.py): unpack it and keep umqtt/simple.py.
$(MPLIB)/umqtt/simple.py: | $(VENV)/.installed
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	TMPDIR=$$d $(BIN)/pip download -q --no-deps --no-clean -d "$$d/dl" micropython-umqtt.simple==$(UMQTT_VERSION) >/dev/null 2>&1 || true; \
	src=$$(find "$$d" -path '*/umqtt/simple.py' | head -n 1); \
	if [ -z "$$src" ]; then echo "could not fetch micropython-umqtt.simple==$(UMQTT_VERSION) from PyPI" >&2; exit 1; fi; \
	mkdir -p $(@D) && cp "$$src" $@

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/sensornet demo $(if $(DURATION),--duration $(DURATION))

bench: setup
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .cache .sensornet .pytest_cache
