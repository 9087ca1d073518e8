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
# REPL protocol core sends (_console below), with the board's filesystem mounted at "/".
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


class _Flash:
    # The board's filesystem as its flash, mounted at "/"; paths under the host directories the
    # models and the VM use (hw/, the models on sys.path) still reach them, and no listing shows them.
    def __init__(self, fs, host, host_dirs):
        self._fs = fs
        self._host = host
        self._dirs = tuple(d.rstrip("/") + "/" for d in host_dirs)

    def _at(self, path):
        for d in self._dirs:
            if path.startswith(d):
                return self._host
        return self._fs

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def ilistdir(self, path):
        return self._at(path).ilistdir(path)

    def chdir(self, path):
        self._fs.chdir(path)

    def getcwd(self):
        return self._fs.getcwd()

    def stat(self, path):
        return self._at(path).stat(path)

    def statvfs(self, path):
        return self._fs.statvfs(path)

    def open(self, path, mode):
        return self._at(path).open(path, mode)

    def remove(self, path):
        self._at(path).remove(path)

    def rename(self, old, new):
        self._at(old).rename(old, new)

    def mkdir(self, path):
        self._at(path).mkdir(path)

    def rmdir(self, path):
        self._at(path).rmdir(path)


def _console(fds):
    # The REPL behind the serial console. Requests on the first fd: b"F<n>\n" or b"S<n>\n" and n
    # bytes of code, run as a file ("exec") or a friendly-REPL statement ("single"); replies on
    # the second: b"R<banner>\n" at the REPL, b"D<n>\n" + the exception text when a command
    # is done, b"B\n" for a soft reset (SystemExit). A command's sys.stdin is the console's input.
    import io

    import vfs

    req_fd, rep_fd = fds.split(",")
    req = open("/dev/fd/" + req_fd, "rb")  # noqa: SIM115 (both open for the VM's lifetime)
    rep = open("/dev/fd/" + rep_fd, "wb")  # noqa: SIM115
    host = [os.getenv("VIRTUAL_HUZZAH_HW") or "."] + [p for p in sys.path if p.startswith("/")]
    flash = _Flash(vfs.VfsPosix(os.getcwd()), vfs.VfsPosix(), host)
    vfs.umount("/")  # the board's flash is "/" (mpremote and rshell use absolute paths)
    vfs.mount(flash, "/")
    os.chdir("/")
    gc.collect()
    rep.write(b"R" + sys.version.split("; ", 1)[-1].encode() + b"; ESP module with ESP8266\n")
    while True:
        try:
            head = req.readline()
            if not head:
                return  # the host closed the console
            code = req.read(int(head[1:]))
            err = ""
            try:
                exec(compile(code, "<stdin>", "exec" if head[0] == 70 else "single"), _globals)  # 70: F
            except SystemExit as e:
                if e.args and e.args[0] == 100:  # machine.reset(): the chip restarts (vm/machine.py)
                    raise
                rep.write(b"B\n")
                continue
            except BaseException as e:
                buf = io.StringIO()
                sys.print_exception(e, buf)
                err = buf.getvalue()
            gc.collect()
            err = "\n".join(ln for ln in err.split("\n") if not ln.endswith(", in _console")).encode()
            rep.write(f"D{len(err)}\n".encode() + err)
        except KeyboardInterrupt:  # a Ctrl-C that came as the command ended
            pass


_pyexec_file("boot.py")
if not os.getenv("VIRTUAL_HUZZAH_RAW_REPL"):  # a soft reset in the raw REPL runs boot.py only
    _pyexec_file("main.py")
if os.getenv("VIRTUAL_HUZZAH_CONSOLE"):
    _console(os.getenv("VIRTUAL_HUZZAH_CONSOLE"))
else:
    print("MicroPython REPL (the virtual board's serial console takes no input)")
    while True:  # the REPL waits for input that never comes; the host powers the board off
        time.sleep(3600)
