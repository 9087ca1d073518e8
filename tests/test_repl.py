"""The REPL protocol core (virtual_huzzah.repl), with plain bytes: what mpremote's
transport_serial.py and rshell's pyboard.py send, and what MicroPython's pyexec.c answers."""

from virtual_huzzah.repl import PASTE_WINDOW, Exec, Interrupt, ReplCore, SoftReset, Stdin, needs_more

BANNER = "MicroPython v1.28.0 on 2026-04-06; ESP module with ESP8266"


def ready(raw=False) -> ReplCore:
    core = ReplCore(BANNER)
    core.vm_ready(power_on=True)
    core.take_output()
    if raw:
        core.receive(b"\r\x01")
        core.take_output()
    return core


def test_power_on_prints_the_banner_and_the_prompt():
    core = ReplCore(BANNER)
    core.vm_output(b"boot.py says hi\n")
    core.vm_ready(power_on=True)
    assert core.take_output() == (b"boot.py says hi\r\n\r\n\r\n" + BANNER.encode()
                                  + b"\r\nType \"help()\" for more information.\r\n>>> ")


def test_raw_repl_runs_code_and_frames_output_and_exception_with_eot():
    core = ready()
    core.receive(b"\r\x03")
    core.receive(b"\r\x01")
    assert core.take_output().endswith(b"\r\nraw REPL; CTRL-B to exit\r\n>")
    core.receive(b"print(1)\x04")
    assert core.take_output() == b"OK"
    assert core.take_requests() == [Exec(b"print(1)", "exec")]
    core.vm_output(b"1\n")
    core.vm_done(b"")
    assert core.take_output() == b"1\r\n\x04\x04>"
    core.receive(b"1/0\x04")
    core.take_requests()
    core.vm_done(b"Traceback (most recent call last):\nZeroDivisionError: divide by zero\n")
    assert core.take_output() == (b"OK\x04Traceback (most recent call last):\r\nZeroDivisionError: divide by zero\r\n"
                                  b"\x04>")


def test_raw_paste_mode_announces_the_window_and_acknowledges_each_window():
    core = ready(raw=True)
    core.receive(b"\x05A\x01")
    assert core.take_output() == b"R\x01" + PASTE_WINDOW.to_bytes(2, "little") + b"\x01"
    code = b"x = 1\n" * 60  # 360 bytes: two windows of 128 used up
    core.receive(code)
    assert core.take_output() == b"\x01\x01"
    assert core.take_requests() == []
    core.receive(b"\x04")
    assert core.take_output() == b"\x04"  # end of data acknowledged
    assert core.take_requests() == [Exec(code, "exec")]
    core.vm_done(b"")
    assert core.take_output() == b"\x04\x04>"


def test_ctrl_d_on_an_empty_raw_line_soft_resets_to_the_raw_repl():
    core = ready(raw=True)
    core.receive(b"\x04")
    assert core.take_output() == b"OK\r\nMPY: soft reboot\r\n"
    assert core.take_requests() == [SoftReset(raw=True)]
    core.vm_output(b"boot.py output\n")
    core.vm_ready(power_on=False)
    assert core.take_output() == b"boot.py output\r\nraw REPL; CTRL-B to exit\r\n>"


def test_friendly_repl_echoes_runs_a_statement_and_soft_resets_with_ctrl_d():
    core = ready()
    core.receive(b"1+1\r")
    assert core.take_output() == b"1+1\r\n"
    assert core.take_requests() == [Exec(b"1+1", "single")]
    core.vm_output(b"2\n")
    core.vm_done(b"")
    assert core.take_output() == b"2\r\n>>> "
    core.receive(b"for i in (1, 2):\r  print(i)\r\r")
    assert core.take_requests() == [Exec(b"for i in (1, 2):\n  print(i)\n", "single")]
    core.vm_done(b"")
    core.take_output()
    core.receive(b"\x04")
    assert core.take_requests() == [SoftReset(raw=False)]


def test_ctrl_b_leaves_the_raw_repl_for_the_friendly_banner():
    core = ready(raw=True)
    core.receive(b"\r\x02")
    assert core.take_output() == b"\r\n" + BANNER.encode() + b"\r\nType \"help()\" for more information.\r\n>>> "


def test_ctrl_c_interrupts_boot_and_input_waits_for_the_repl():
    core = ReplCore(BANNER)  # main.py is running
    core.receive(b"\r\x03\r\x01")
    assert core.take_requests() == [Interrupt()]
    assert core.take_output() == b""
    core.vm_output(b"KeyboardInterrupt: \n")
    core.vm_ready(power_on=True)
    assert core.take_output().endswith(b">>> \r\n>>> \r\nraw REPL; CTRL-B to exit\r\n>")


def test_a_running_command_reads_the_console_input_ctrl_c_included():
    core = ready(raw=True)
    core.receive(b"import sys; sys.stdin.buffer.read(3)\x04")
    core.take_requests()
    core.receive(b"a\x03b")  # rshell's binary transfer, after micropython.kbd_intr(-1)
    assert core.take_requests() == [Stdin(b"a\x03b")]


def test_a_chip_reset_forgets_the_raw_repl_and_pending_input():
    core = ready(raw=True)
    core.receive(b"import machine; machine.reset()\x04")
    core.take_requests()
    core.chip_reset()
    core.receive(b"\r\x02")  # mpremote leaving after `reset`: arrives while the board boots
    core.vm_ready(power_on=True)
    assert core.take_output().endswith(b"\r\n>>> ")
    assert not core.raw


def test_continuation_rule():
    assert needs_more(b"def f():")
    assert needs_more(b"x = (1,")
    assert not needs_more(b"x = (1, 2)")
    assert needs_more(b"if x:\n  y()")
    assert not needs_more(b"if x:\n  y()\n")
