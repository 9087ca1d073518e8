# Virtual Feather Huzzah: the REPL behind the board's serial console (virtual_huzzah.serialport).
#
# The REPL protocol (friendly and raw REPL, raw-paste mode) is the host's (virtual_huzzah.repl);
# the code it receives runs here, in the board's __main__ (what boot.py and main.py left), with
# the board's filesystem as its flash at "/": mpremote and rshell use absolute paths. Loaded by
# vm/_board.py when boot.py and main.py are done (or interrupted by Ctrl-C).
import gc
import io
import os
import sys

import vfs


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


_req = _rep = _flash = None  # set up once: serve() starts again after a Ctrl-C that comes as it starts
_announced = False


def serve(fds, fs, globals_):
    # The REPL behind the serial console. Requests on the first fd: b"F<n>\n" or b"S<n>\n" and n
    # bytes of code, run as a file ("exec") or a friendly-REPL statement ("single"); replies on
    # the second: b"R<banner>\n" at the REPL, b"D<n>\n" + the exception text when a command
    # is done, b"B\n" for a soft reset (SystemExit). A command's sys.stdin is the console's input.
    # fs: the board's filesystem (a host directory), which becomes "/".
    global _req, _rep, _flash, _announced
    if _req is None:
        _req = open("/dev/fd/" + fds.split(",")[0], "rb")  # noqa: SIM115 (open for the VM's lifetime)
    if _rep is None:
        _rep = open("/dev/fd/" + fds.split(",")[1], "wb")  # noqa: SIM115
    if _flash is None:
        host = [os.getenv("VIRTUAL_HUZZAH_HW") or "."] + [p for p in sys.path if p.startswith("/")]
        try:
            vfs.umount("/")  # the board's flash is "/" (mpremote and rshell use absolute paths)
        except OSError:
            pass
        vfs.mount(_Flash(vfs.VfsPosix(fs), vfs.VfsPosix(), host), "/")
        os.chdir("/")
        _flash = True
    req, rep = _req, _rep
    gc.collect()
    if not _announced:
        rep.write(b"R" + sys.version.split("; ", 1)[-1].encode() + b"; ESP module with ESP8266\n")
        _announced = True
    while True:
        try:
            head = req.readline()
            if not head:
                return  # the host closed the console
            code = req.read(int(head[1:]))
            err = ""
            try:
                exec(compile(code, "<stdin>", "exec" if head[0] == 70 else "single"), globals_)  # 70: F
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
            err = "\n".join(ln for ln in err.split("\n") if not ln.endswith(", in serve")).encode()
            rep.write(f"D{len(err)}\n".encode() + err)
        except KeyboardInterrupt:  # a Ctrl-C that came as the command ended
            pass
