# Virtual Feather Huzzah: what the board does at power-up before and around our firmware.
#
# The esp8266 port has `machine` and `network` in C; here they are models (.mpy, on sys.path
# after the filesystem and the frozen modules), loaded and used first so that what they keep
# allocated is fixed: the host measures it (VIRTUAL_HUZZAH_MEASURE set: print "models <bytes>"
# of gc.mem_alloc() and stop) and adds it to the ESP8266's 38 KB. Then, as the port's
# pyexec_file does, boot.py and main.py run from the board's filesystem (the current directory)
# in one __main__ namespace; an exception is printed and the boot goes on; when main.py returns
# (safe mode) the board idles at its REPL. Run as `micropython -m _board` from the board's filesystem.
# With a serial console (VIRTUAL_HUZZAH_CONSOLE="<request fd>,<reply fd>", virtual_huzzah.serialport):
# Ctrl-C (SIGINT) interrupts boot.py/main.py as on the board, and the REPL runs what the host's
# REPL protocol core sends (vm/_console.py), with the board's filesystem mounted at "/".
import gc
import os
import sys
import time

import machine
import network


def _exercise(machine, network):
    # What the models allocate once used: pin state, the I2C devices, both WLAN interfaces.
    p = machine.Pin(14, machine.Pin.OUT, value=1)  # a free GPIO: the LEDs stay untouched
    p(0)
    p(1)
    bus = machine.I2C(scl=machine.Pin(5), sda=machine.Pin(4))
    for a in bus.scan():
        bus.readfrom_mem(a, 0x8C, 4)
    for i in (network.STA_IF, network.AP_IF):
        w = network.WLAN(i)
        w.status()
        w.config("mac")


_exercise(machine, network)
del _exercise, machine, network
gc.collect()
if os.getenv("VIRTUAL_HUZZAH_MEASURE"):
    print("models", gc.mem_alloc())
    sys.exit(0)

_globals = {"__name__": "__main__"}
_fs = os.getcwd()  # the board's filesystem (before boot.py could change directory)


def _pyexec_file(name):
    try:
        with open(name) as f:
            code = compile(f.read(), name, "exec")
    except OSError:  # no such file on the board
        return
    try:
        exec(code, _globals)
    except SystemExit:
        raise
    except BaseException as e:  # KeyboardInterrupt too: Ctrl-C on the console stops the script
        sys.print_exception(e)


_pyexec_file("boot.py")
if not os.getenv("VIRTUAL_HUZZAH_RAW_REPL"):  # a soft reset in the raw REPL runs boot.py only
    _pyexec_file("main.py")
if os.getenv("VIRTUAL_HUZZAH_CONSOLE"):
    while True:  # a Ctrl-C meant for main.py may come as the REPL starts: start it again
        try:
            import _console  # loaded only now: no heap taken from the firmware while it runs

            _console.serve(os.getenv("VIRTUAL_HUZZAH_CONSOLE"), _fs, _globals)
            break
        except KeyboardInterrupt:
            pass
else:
    print("MicroPython REPL (the virtual board's serial console takes no input)")
    while True:  # the REPL waits for input that never comes; the host powers the board off
        time.sleep(3600)
