"""One way to stop a child process: a signal, a bounded wait, then SIGKILL.

Used by the broker runner, the virtual boards, the demo and the tests. It imports nothing of
sensornet's or virtual_huzzah's, so both can use it and their imports still run one way.
"""

from __future__ import annotations

import signal
import subprocess

DEFAULT_TIMEOUT_S = 5.0


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str] | None, timeout: float = DEFAULT_TIMEOUT_S,
         sig: int = signal.SIGTERM) -> int | None:
    """Stop `process` and reap it; return its exit status (int), or None for no process.

    Sends `sig` (SIGTERM by default, so it can shut down cleanly), waits up to `timeout`
    seconds, then sends SIGKILL and waits for it. A process that has already exited is only
    reaped. Never raises for a process that is gone.
    """
    if process is None:
        return None
    if process.poll() is None:
        try:
            process.send_signal(sig)
            process.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def kill(process: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> int | None:
    """SIGKILL `process` at once, as a crash or a pulled plug would, and reap it (exit status)."""
    return stop(process, 0, signal.SIGKILL)
