"""A virtual board's serial console: a pseudo-terminal speaking MicroPython's REPL.

`sensornet sim --serial-dir DIR` gives each board one at DIR/<client_id> (a symlink to the pty's
/dev/pts/N), which mpremote, rshell or a terminal program open as they open /dev/ttyUSB0 of a
Feather Huzzah (its CP2104 USB-UART). The protocol is repl.ReplCore's; here is only the I/O:

- the pty: what a client writes goes to the core; what the core sends is queued for the client.
  Nobody reading is a UART with nothing on the other end: beyond 64 KiB unread, the oldest
  output is dropped (counted in `dropped`), and the board never waits for the host.
- the VM (vm/_board.py): its stdout is the console's output; its stdin is the running command's
  sys.stdin; two pipes carry the core's requests (code to run) and the VM's replies (at the
  REPL, done with the exception text, soft reset). Ctrl-C while boot.py/main.py run is SIGINT,
  which the unix port turns into KeyboardInterrupt, as the esp8266 port does for the UART.

Replies are taken only after the VM's stdout has been drained, so the "\\x04" that ends a
command's output never overtakes that output.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import subprocess
import threading
import tty
from collections.abc import Callable
from pathlib import Path

from .repl import Exec, Interrupt, ReplCore, SoftReset, Stdin

OUTPUT_LIMIT = 64 * 1024  # bytes of console output kept for a client that does not read


class SerialConsole:
    """The pty at `link` (a symlink made at start(), removed at close()) for one board.

    on_output(bytes): called with everything the VM prints (the board keeps its console log
    with it). soft_reset(raw: bool): called, on a thread of its own, when the REPL asks for a
    soft reset; it must restart the VM and attach() the new one.
    """

    def __init__(self, link: Path, on_output: Callable[[bytes], None], soft_reset: Callable[[bool], None]):
        self.link = Path(link)
        self.core = ReplCore()
        self.dropped = 0  # bytes of output nobody read, dropped
        self._on_output = on_output
        self._soft_reset = soft_reset
        self._lock = threading.RLock()
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._master = self._slave = -1
        self._process: subprocess.Popen[bytes] | None = None
        self._requests_fd = -1
        self._threads: list[threading.Thread] = []

    # --- the pty ---------------------------------------------------------------------------
    def start(self) -> SerialConsole:
        """Open the pty and make the symlink (replacing a stale one)."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: a UART passes bytes
        os.set_blocking(self._master, False)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(os.ttyname(self._slave))
        for target, name in ((self._read_pty, "rx"), (self._write_pty, "tx")):
            t = threading.Thread(target=target, daemon=True, name=f"serial {self.link.name} {name}")
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        """Remove the symlink and close the pty (a client still holding it sees it hang up)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        with contextlib.suppress(FileNotFoundError):
            if self.link.is_symlink():
                self.link.unlink()
        for t in self._threads:
            t.join(2)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    @property
    def device(self) -> str:
        """The pty's own name (/dev/pts/N)."""
        return os.ttyname(self._slave)

    def _read_pty(self) -> None:
        while not self._closed:
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            with self._lock:
                self.core.receive(data)
                self._flush()

    def _write_pty(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._queue:
                    self._wake.wait(0.5)
                    continue
                chunk = self._queue.popleft()
                self._queued -= len(chunk)
                try:
                    n = os.write(self._master, chunk)
                except BlockingIOError:
                    n = 0
                except OSError:
                    return
                if n < len(chunk):  # the pty's buffer is full: wait for the client, a little
                    self._queue.appendleft(chunk[n:])
                    self._queued += len(chunk) - n
                    self._lock.release()
                    try:
                        select.select([], [self._master], [], 0.2)
                    finally:
                        self._lock.acquire()

    def _send(self, data: bytes) -> None:
        if not data:
            return
        self._queue.append(data)
        self._queued += len(data)
        while self._queued > OUTPUT_LIMIT:
            old = self._queue.popleft()
            self._queued -= len(old)
            self.dropped += len(old)
        self._wake.notify_all()

    # --- the VM ----------------------------------------------------------------------------
    def launch(self, argv: list[str], cwd: Path, env: dict[str, str], *, raw_repl: bool,
               chip_reset: bool) -> tuple[subprocess.Popen[bytes], threading.Thread]:
        """Start the board's VM (vm/_board.py) with this console: its stdin, stdout and the two
        pipes of requests and replies. raw_repl: a soft reset in the raw REPL (boot.py only);
        chip_reset: a power-on or reset (else a soft reset). Returns the process and the thread
        that reads its output, which ends with it. Raises OSError when the VM cannot start."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = dict(env, VIRTUAL_HUZZAH_CONSOLE=f"{req_r},{rep_w}")
        if raw_repl:
            env["VIRTUAL_HUZZAH_RAW_REPL"] = "1"
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(req_r, rep_w))
        except OSError:
            os.close(req_w)
            os.close(rep_r)
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        return process, self._attach(process, req_w, rep_r, chip_reset=chip_reset)

    def _attach(self, process: subprocess.Popen[bytes], requests_fd: int, replies_fd: int, *,
                chip_reset: bool) -> threading.Thread:
        with self._lock:
            if chip_reset:
                self.core.chip_reset()
            self._process, self._requests_fd = process, requests_fd
        t = threading.Thread(target=self._pump, args=(process, requests_fd, replies_fd, chip_reset), daemon=True,
                             name=f"serial {self.link.name} vm")
        t.start()
        return t

    def _pump(self, process: subprocess.Popen[bytes], requests_fd: int, replies_fd: int, chip_reset: bool) -> None:
        assert process.stdout is not None
        out_fd = process.stdout.fileno()
        replies = b""
        try:
            while True:
                ready, _, _ = select.select([out_fd, replies_fd], [], [])
                if out_fd in ready and not self._vm_output(out_fd):
                    return
                if replies_fd in ready:
                    self._vm_output(out_fd, drain=True)  # what it printed before replying goes first
                    data = os.read(replies_fd, 65536)
                    if not data:
                        self._vm_output(out_fd, drain=True)
                        return
                    replies = self._vm_replies(replies + data, chip_reset)
        finally:
            with self._lock:
                if self._requests_fd == requests_fd:
                    self._requests_fd = -1
            os.close(replies_fd)
            with contextlib.suppress(OSError):
                os.close(requests_fd)

    def _vm_output(self, fd: int, drain: bool = False) -> bool:
        while True:
            if drain and not select.select([fd], [], [], 0)[0]:
                return True
            data = os.read(fd, 65536)
            if not data:
                return False
            self._on_output(data)
            with self._lock:
                self.core.vm_output(data)
                self._flush()
            if not drain:
                return True

    def _vm_replies(self, buf: bytes, chip_reset: bool) -> bytes:
        """Handle the complete replies in `buf`; return what is left of an incomplete one."""
        while b"\n" in buf:
            head, rest = buf.split(b"\n", 1)
            kind = head[:1]
            if kind == b"D":
                n = int(head[1:])
                if len(rest) < n:
                    return buf
                error, buf = rest[:n], rest[n:]
                with self._lock:
                    self.core.vm_done(error)
                    self._flush()
                continue
            buf = rest
            with self._lock:
                if kind == b"R":
                    self.core.banner = head[1:] + b"\r\nType \"help()\" for more information.\r\n"
                    self.core.vm_ready(power_on=chip_reset)
                elif kind == b"B":
                    self.core.vm_soft_reset()
                self._flush()
        return buf

    def _flush(self) -> None:
        """Send the core's output and carry out its requests (with the lock held)."""
        self._send(self.core.take_output())
        for r in self.core.take_requests():
            process = self._process
            if isinstance(r, Exec):
                self._write(self._requests_fd, b"%c%d\n" % (b"F" if r.mode == "exec" else b"S", len(r.code)) + r.code)
            elif isinstance(r, Stdin) and process is not None and process.stdin is not None:
                self._write(process.stdin.fileno(), r.data)
            elif isinstance(r, Interrupt) and process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
            elif isinstance(r, SoftReset):
                threading.Thread(target=self._soft_reset, args=(r.raw,), daemon=True,
                                 name=f"serial {self.link.name} soft reset").start()

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        if fd < 0:
            return  # the VM is restarting: what was sent is lost, as at a reset
        with contextlib.suppress(BrokenPipeError, OSError):
            while data:
                data = data[os.write(fd, data):]
