"""`make setup` checks the OS and Python first (scripts/check-platform.sh) and says what to change."""

import glob
import os
import shutil
import subprocess

from tests.helpers import REPO


def old_python(tmp_path):
    """A Python 3.9, as Raspberry Pi OS Bullseye has: a real one when installed here (pyenv, deadsnakes),
    else a stand-in that answers the version question as 3.9 does."""
    found = [p for p in [*glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")), "/usr/bin/python3.9",
                         shutil.which("python3.9")] if p and "/shims/" not in p and os.access(p, os.X_OK)]
    if found:
        return found[0]
    stand_in = tmp_path / "python3.9"
    stand_in.write_text("#!/bin/sh\necho 3.9\n")
    stand_in.chmod(0o755)
    return str(stand_in)


def test_python_3_9_fails_first_with_a_clear_message(tmp_path):
    result = subprocess.run(["make", "-s", "setup", f"PYTHON={old_python(tmp_path)}"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "is Python 3.9; sensornet needs Python 3.11 or newer" in result.stderr
    assert "Bookworm" in result.stderr
    assert "setup: creating" not in result.stdout  # nothing else was tried


def test_the_python_running_the_tests_is_supported(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=raspbian\nVERSION_ID="12"\nPRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\n')
    result = subprocess.run([str(REPO / "scripts" / "check-platform.sh"), "python3"], capture_output=True, text=True,
                            env=dict(os.environ, OS_RELEASE=str(os_release)), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "on Raspbian GNU/Linux 12 (bookworm): supported" in result.stdout
