# Virtual Feather Huzzah: what the board does at power-up before and around our firmware.
#
# The esp8266 port has `machine` and `network` in C and umqtt.simple frozen in flash; here they
# are Python modules on sys.path after the filesystem, loaded first so their heap cost is fixed
# (the host measures it and adds it to the heap). Then, as the port's pyexec_file does, boot.py
# and main.py run from the board's filesystem (the current directory) in one __main__ namespace;
# an exception is printed and the boot goes on, and when main.py ends the VM exits.
import sys

sys.path[0] = ""  # running a script put its directory first; on the board '' is first

import gc

import machine
import network

try:
    import umqtt.simple
except ImportError:  # a firmware build without umqtt
    pass

del machine, network
gc.collect()


_globals = {"__name__": "__main__"}


def _pyexec_file(name):
    try:
        with open(name) as f:
            code = compile(f.read(), name, "exec")
    except OSError:  # no such file on the board
        return
    try:
        exec(code, _globals)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        sys.print_exception(e)


_pyexec_file("boot.py")
_pyexec_file("main.py")
