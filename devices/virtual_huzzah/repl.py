"""The board side of MicroPython's serial REPL protocol, I/O-free: bytes in, bytes and requests out.

What a board's UART console does, as MicroPython's shared/runtime/pyexec.c (event-driven REPL,
the esp8266 port's) and ports/esp8266/main.c do it, and as mpremote (transport_serial.py) and
rshell (pyboard.py) expect:

- friendly REPL: echo, backspace, Enter runs a line (compound statements continue with "... "
  until an empty line); Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C clears the line, Ctrl-D soft
  reset, Ctrl-E paste mode.
- raw REPL ("raw REPL; CTRL-B to exit\\r\\n>"): bytes up to Ctrl-D are the code; "OK", the
  output, "\\x04", the exception text, "\\x04", ">". Ctrl-D on an empty line: "OK\\r\\n" and a
  soft reset; Ctrl-B back to the friendly REPL; Ctrl-A again the banner.
- raw-paste mode ("\\x05A\\x01" in the raw REPL): "R\\x01", the flow-control window (2 bytes,
  little-endian: 128, half the esp8266 port's 256-byte stdin buffer) and "\\x01"; another
  "\\x01" for every window of bytes taken; Ctrl-D ends the code and is acknowledged with
  "\\x04"; then output, "\\x04", exception text, "\\x04", ">".
- a soft reset prints "MPY: soft reboot\\r\\n"; the board runs boot.py, and main.py only in the
  friendly REPL (so mpremote's soft reset in the raw REPL does not start the application).
- while code runs (boot.py, main.py, a command), input waits as in the UART's buffer; Ctrl-C
  then interrupts boot.py/main.py (KeyboardInterrupt). While a REPL command runs its input goes
  to its sys.stdin (rshell streams files that way, with kbd_intr(-1), so 0x03 is data there).

The code runs elsewhere (the board's MicroPython VM): the core asks for it with requests, and is
told what the VM printed, when it finished and what it raised. Program output is "cooked" as
on the board (print's "\\n" goes out as "\\r\\n").
"""

from __future__ import annotations

from dataclasses import dataclass

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
PASTE_BANNER = b"paste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "
PASTE_WINDOW = 128  # MICROPY_REPL_STDIN_BUFFER_MAX (256) / 2
PS1, PS2 = b">>> ", b"... "
_OPENERS, _CLOSERS = b"([{", b")]}"


@dataclass(frozen=True)
class Exec:
    """Run `code` (bytes) in the board's __main__; mode "exec" (a file: raw REPL, paste) or
    "single" (one friendly-REPL statement: an expression's value is printed)."""

    code: bytes
    mode: str


@dataclass(frozen=True)
class Interrupt:
    """Ctrl-C while boot.py or main.py runs: raise KeyboardInterrupt in it."""


@dataclass(frozen=True)
class SoftReset:
    """Soft reset: restart the VM (the filesystem, RTC memory and reset cause kept); `raw`: the
    raw REPL is on, so only boot.py runs."""

    raw: bool


@dataclass(frozen=True)
class Stdin:
    """Bytes for the running command's sys.stdin."""

    data: bytes


Request = Exec | Interrupt | SoftReset | Stdin


def needs_more(source: bytes) -> bool:
    """True when a friendly-REPL entry continues on the next line (py/repl.c's rule, simplified:
    a line ending with ':' or '\\\\', open brackets or an open triple-quoted string, and a compound
    statement goes on until an empty line)."""
    text = source.decode("utf-8", "replace")
    if text.count('"""') % 2 or text.count("'''") % 2:
        return True
    depth = sum(text.count(chr(c)) for c in _OPENERS) - sum(text.count(chr(c)) for c in _CLOSERS)
    if depth > 0:
        return True
    lines = text.split("\n")
    if len(lines) > 1:
        return lines[-1].strip() != ""  # inside a compound statement: an empty line ends it
    return text.rstrip().endswith((":", "\\"))


class ReplCore:
    """One board's REPL state machine. Feed it with receive() (bytes from the serial line) and
    the vm_*() events; take what to send back with take_output() and what the VM must do with
    take_requests(). banner: the friendly REPL's first line, e.g. "MicroPython v1.28.0 on
    2026-04-06; ESP module with ESP8266"."""

    def __init__(self, banner: str = "MicroPython; ESP module with ESP8266"):
        self.banner = banner.encode() + b"\r\nType \"help()\" for more information.\r\n"
        self.raw = False  # pyexec_mode_kind: raw REPL (True) or friendly
        self.busy = True  # boot.py/main.py or a command runs; input waits
        self.booting = True  # the busy code is boot.py/main.py (Ctrl-C interrupts it)
        self._pending = bytearray()  # input not yet taken (the UART's buffer)
        self._line = bytearray()
        self._paste: bytearray | None = None  # raw-paste code being received
        self._window = 0
        self._friendly_paste = False
        self._escape = 0  # bytes of an ANSI escape sequence still to skip
        self._out = bytearray()
        self._requests: list[Request] = []
        self._last_out = 0

    # --- what goes out -------------------------------------------------------------------
    def take_output(self) -> bytes:
        """Bytes to send on the serial line, oldest first (and forget them)."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def take_requests(self) -> list[Request]:
        """What the VM must do, oldest first (and forget them)."""
        out, self._requests = self._requests, []
        return out

    def _tx(self, data: bytes) -> None:
        self._out += data
        if data:
            self._last_out = data[-1]

    def _cooked(self, data: bytes) -> bytes:
        out = bytearray()
        prev = self._last_out
        for b in data:
            if b == 0x0A and prev != 0x0D:
                out.append(0x0D)
            out.append(b)
            prev = b
        return bytes(out)

    # --- events from the VM --------------------------------------------------------------
    def vm_output(self, data: bytes) -> None:
        """What the VM printed (its stdout)."""
        self._tx(self._cooked(data))

    def vm_ready(self, power_on: bool) -> None:
        """boot.py and main.py are done (or were interrupted): the REPL starts. power_on: after a
        chip reset (a blank line first, as init_done() prints), else after a soft reset."""
        self.busy = self.booting = False
        if self.raw:
            self._tx(RAW_BANNER + b">")
        else:
            self._tx((b"\r\n" if power_on else b"") + b"\r\n" + self.banner + PS1)
        self._drain()

    def vm_done(self, error: bytes) -> None:
        """The command finished; `error`: the exception as sys.print_exception() prints it, or b""."""
        self.busy = False
        if self.raw:
            self._tx(b"\x04" + self._cooked(error) + b"\x04>")
        else:
            self._tx(self._cooked(error) + PS1)
        self._drain()

    def vm_soft_reset(self) -> None:
        """The command raised SystemExit: a soft reset follows (the VM restarts)."""
        if self.raw:
            self._tx(b"\x04\x04")
        self._soft_reset()

    def chip_reset(self) -> None:
        """The chip restarted (power-on, RST, machine.reset(), the watchdog): the friendly REPL
        after boot; input not yet taken is lost."""
        self.raw = False
        self.busy = self.booting = True
        self._pending.clear()
        self._line.clear()
        self._paste = None
        self._friendly_paste = False

    # --- bytes from the serial line ------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes the host sent on the serial line."""
        for b in data:
            if not self.busy:
                self._char(b)
            elif not self.booting:
                self._requests.append(Stdin(bytes([b])))
            elif b == CTRL_C:
                self._requests.append(Interrupt())
            else:
                self._pending.append(b)
        self._merge_stdin()

    def _merge_stdin(self) -> None:
        merged: list[Request] = []
        for r in self._requests:
            if isinstance(r, Stdin) and merged and isinstance(merged[-1], Stdin):
                merged[-1] = Stdin(merged[-1].data + r.data)
            else:
                merged.append(r)
        self._requests = merged

    def _drain(self) -> None:
        while self._pending and not self.busy:
            b = self._pending.pop(0)
            self._char(b)
        self._merge_stdin()

    def _char(self, b: int) -> None:
        if self._paste is not None:
            self._raw_paste_char(b)
        elif self.raw:
            self._raw_char(b)
        elif self._friendly_paste:
            self._paste_mode_char(b)
        else:
            self._friendly_char(b)

    def _run(self, code: bytes, mode: str) -> None:
        self.busy, self.booting = True, False
        self._requests.append(Exec(code, mode))
        if self._pending:  # what waits in the UART's buffer is the command's stdin now
            self._requests.append(Stdin(bytes(self._pending)))
            self._pending.clear()

    def _soft_reset(self) -> None:
        self._tx(SOFT_REBOOT)
        self.busy = self.booting = True
        self._line.clear()
        self._requests.append(SoftReset(self.raw))

    # raw REPL
    def _raw_char(self, b: int) -> None:
        if b == CTRL_A:
            if len(self._line) == 2 and self._line[0] == CTRL_E:
                kind = self._line[1]
                self._line.clear()
                if kind != ord("A"):
                    self._tx(b"R\x00>")
                    return
                self._tx(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little") + b"\x01")
                self._paste, self._window = bytearray(), PASTE_WINDOW
                return
            self._line.clear()
            self._tx(RAW_BANNER + b">")
        elif b == CTRL_B:
            self.raw = False
            self._line.clear()
            self._tx(b"\r\n" + self.banner + PS1)
        elif b == CTRL_C:
            self._line.clear()
        elif b == CTRL_D:
            self._tx(b"OK")
            if not self._line:
                self._tx(b"\r\n")
                self._soft_reset()
                return
            code, self._line = bytes(self._line), bytearray()
            self._run(code, "exec")
        else:
            self._line.append(b)

    def _raw_paste_char(self, b: int) -> None:
        assert self._paste is not None
        if b in (CTRL_C, CTRL_D):
            code, self._paste = bytes(self._paste), None
            self._tx(b"\x04")  # the end of the code, acknowledged
            if b == CTRL_C:
                self._tx(b"\x04" + b"KeyboardInterrupt: \r\n" + b"\x04>")
                return
            self._run(code, "exec")
            return
        self._paste.append(b)
        self._window -= 1
        if self._window == 0:
            self._tx(b"\x01")  # another window free
            self._window = PASTE_WINDOW

    # friendly REPL
    def _friendly_char(self, b: int) -> None:
        if self._escape:
            self._escape -= 1
            if self._escape == 1 and b != ord("["):
                self._escape = 0
            return
        empty = not self._line
        if b == 0x1B:
            self._escape = 2  # ESC [ X: cursor keys, not kept
        elif b == CTRL_A and empty:
            self.raw = True
            self._tx(b"\r\n" + RAW_BANNER + b">")
        elif b == CTRL_B and empty:
            self._tx(b"\r\n" + self.banner + PS1)
        elif b == CTRL_C:
            self._line.clear()
            self._tx(b"\r\n" + PS1)
        elif b == CTRL_D and empty:
            self._tx(b"\r\n")
            self._soft_reset()
        elif b == CTRL_E and empty:
            self._friendly_paste = True
            self._tx(b"\r\n" + PASTE_BANNER)
        elif b in (0x08, 0x7F):
            last_line = self._line.rsplit(b"\n", 1)[-1]
            if last_line:
                self._line.pop()
                self._tx(b"\x08 \x08")
        elif b == 0x0D:
            self._tx(b"\r\n")
            if needs_more(bytes(self._line)):
                self._line.append(0x0A)
                self._tx(PS2)
                return
            code, self._line = bytes(self._line), bytearray()
            if code.strip():
                self._run(code, "single")
            else:
                self._tx(PS1)
        elif b >= 0x20 or b == 0x09:
            self._line.append(b)
            self._tx(bytes([b]))

    def _paste_mode_char(self, b: int) -> None:
        if b == CTRL_C:
            self._friendly_paste = False
            self._line.clear()
            self._tx(b"\r\n" + PS1)
        elif b == CTRL_D:
            self._friendly_paste = False
            code, self._line = bytes(self._line), bytearray()
            self._tx(b"\r\n")
            self._run(code.replace(b"\r", b"\n"), "exec")
        else:
            self._line.append(b)
            self._tx(b"\r\n=== " if b == 0x0D else bytes([b]))
