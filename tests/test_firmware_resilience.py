"""The firmware never needs a power cycle: brokers that never answer, TCP handshakes that never
complete, links that go silent, any config.json, and config changes while it runs.

Virtual boards (real MicroPython VM) against a real Mosquitto; the LED codes are decoded from the
GPIO0 timeline the board's pin model records, the MQTT traffic read at the broker (a subscriber)
or in a TCP proxy between the board and the broker. Every socket here is on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest

from tests.helpers import codes_from_dark, device_config, led_dark_for, run_micropython, wait_code, wait_until
from tests.netfaults import Proxy, SilentBroker, full_backlog_port, publish_topic
from virtual_huzzah.board import SOFT_RESET, AccessPoint

pytestmark = pytest.mark.e2e

CHIP = 0xC0FF01
CLIENT_ID = "huzzah-01ffc000"  # "huzzah-" + hex of unique_id(): the chip id's 4 bytes, little-endian
PINGREQ, PUBLISH, CONNECT = 0xC0, 0x30, 0x10


# ---- the LED ----

def lit(board, since=0.0):
    """The red LED's lit intervals (on, off) in unix time (s) after `since`, oldest first."""
    out, on = [], None
    for t, level in board.pin_timeline(0):
        if t < since:
            continue
        if level == 0 and on is None:
            on = t
        elif level == 1 and on is not None:
            out.append((on, t))
            on = None
    return out


def assert_led_kept_its_rhythm(board, since, until):
    """Between `since` and `until` the LED blinked a code without a hitch: every blink about
    200 ms and never longer dark than the 1.8 s between two groups (plus scheduling slack), so
    the asyncio loop that drives it never stalled."""
    pulses = [p for p in lit(board, since) if p[1] <= until]
    assert pulses, "the LED never lit"
    assert pulses[0][0] - since < 2.2, pulses
    assert until - pulses[-1][1] < 2.2, pulses
    assert max(off - on for on, off in pulses) < 0.3, pulses
    assert max((b[0] - a[1] for a, b in itertools.pairwise(pulses)), default=0) < 2.2, pulses


@pytest.fixture
def silent_broker():
    b = SilentBroker()
    yield b
    b.close()


@pytest.fixture
def proxy(broker):
    p = Proxy(broker.port)
    yield p
    p.close()


def write_config(board, cfg):
    """Replace the board's config.json as an upload does (whole file, at once)."""
    tmp = board.fs / "config.json.tmp"
    tmp.write_text(json.dumps(cfg) if isinstance(cfg, dict) else cfg)
    tmp.replace(board.fs / "config.json")


# ---- 1: brokers that never answer do not stall the event loop ----

def test_a_broker_that_accepts_tcp_but_never_answers_does_not_stall_the_board(silent_broker, make_board):
    port = silent_broker.port
    board = make_board(CHIP, config=device_config(CLIENT_ID, port, mqtt_timeout_s=2, queue_size=2))
    # each connect waits mqtt_timeout_s for the CONNACK, then fails with ETIMEDOUT (110): code 2
    board.wait_console(f"app: broker 127.0.0.1:{port}: OSError(110,), retry in 1000 ms", 20)
    wait_until(lambda: len(silent_broker.accepted) >= 3, 20, "three connection attempts")
    # the board closes each connection it gave up on, mqtt_timeout_s after it began
    wait_until(lambda: len(silent_broker.closed) >= 3, 10, "the board closing its third connection")
    durations = [c - a for a, c in zip(silent_broker.accepted, silent_broker.closed, strict=False)]
    assert all(1.9 <= d <= 3 for d in durations), durations
    # the LED blinked code 2 without a hitch from the first failure to the end of the third
    # attempt, through the 4 s the second and third waited for their CONNACKs
    wait_code(board, 2, repeats=3)
    assert_led_kept_its_rhythm(board, silent_broker.closed[0] + 0.3, silent_broker.closed[2])
    # the sensor task goes on: readings pile up in the outbox (2), the oldest dropped
    board.wait_console("app: outbox full, dropped the oldest reading", 10)
    # the Wi-Fi task goes on: the access point goes away, code 1 shows (lower than 2)
    since = time.time()
    board.set_access_point(None)
    board.wait_console("wifi: not connected", 5)
    wait_code(board, 1, since=since, timeout=15)
    board.set_access_point(AccessPoint())
    wait_code(board, 2, since=time.time(), timeout=30)
    assert board.resets == []  # the event loop fed the watchdog all along


def test_a_board_without_its_broker_for_mqtt_lost_reset_s_resets_itself(silent_broker, make_board):
    board = make_board(CHIP, config=device_config(CLIENT_ID, silent_broker.port, mqtt_timeout_s=2,
                                                  mqtt_lost_reset_s=8))
    wait_until((board.hw / "wdt").exists, 10, "the firmware starting the watchdog (machine.WDT)")
    wait_until(lambda: board.resets, 30, "the board resetting itself")
    [(at, cause)] = board.resets[:1]
    assert cause == SOFT_RESET  # machine.reset(), not a starved watchdog
    assert "app: no broker for 8 s: machine.reset()" in board.console_text()
    wait_until(lambda: board.console_text().count("app: client id") == 2, 10, "the board booting again")


def test_a_boot_that_lasts_60_s_clears_the_boot_loop_counter(silent_broker, make_board):
    # The thing under test takes a minute: safe mode's counter (RTC memory: 0x5A, boots that did not
    # last 60 s, safe mode) counts this boot until it has lasted 60 s, then the firmware clears it.
    board = make_board(CHIP, config=device_config(CLIENT_ID, silent_broker.port))
    rtc = board.hw / "rtc.bin"
    wait_until(lambda: rtc.exists() and rtc.read_bytes() == b"\x5a\x01\x00", 10, "this boot counted")
    began = time.time()
    wait_until(lambda: rtc.read_bytes() == b"\x5a\x00\x00", 75, "the counter cleared", interval=0.5)
    assert time.time() - began > 55
    assert board.resets == []
    assert board.running


def test_a_tcp_handshake_that_never_completes_does_not_stall_the_board(make_board):
    with full_backlog_port() as port:
        board = make_board(CHIP, config=device_config(CLIENT_ID, port, mqtt_timeout_s=2, queue_size=2))
        board.wait_console(f"app: broker 127.0.0.1:{port}: OSError(110,), retry in 1000 ms", 20)
        board.wait_console(f"app: broker 127.0.0.1:{port}: OSError(110,), retry in 2000 ms", 20)
        began = time.time()  # 2 s of back-off, then the third attempt waits 2 s for the handshake
        board.wait_console(f"app: broker 127.0.0.1:{port}: OSError(110,), retry in 4000 ms", 20)
        ended = time.time()
        assert ended - began >= 3.8
        wait_code(board, 2, repeats=3)
        assert_led_kept_its_rhythm(board, began, ended)
        board.wait_console("app: outbox full, dropped the oldest reading", 10)
        assert "OSError(111" not in board.console_text()  # never refused: the handshake just hung
        assert board.running


# ---- 2: a link that goes silent is noticed within 1.5 x keepalive ----

def test_a_silent_link_is_noticed_within_one_and_a_half_keepalives(broker, subscriber, proxy, make_board):
    keepalive = 2
    board = make_board(CHIP, broker=broker, config=device_config(
        CLIENT_ID, proxy.port, mqtt_keepalive_s=keepalive, mqtt_timeout_s=2, publish_interval_s=3600))
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561")  # connected, announced, the first reading
    # idle: the board pings at half the keepalive, and the broker answers
    pings = wait_until(lambda: len(p := proxy.sent_by_board(PINGREQ)) >= 4 and p, 10, "four PINGREQs")
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pings)]
    assert all(0.9 * keepalive / 2 <= g <= 1.4 * keepalive / 2 for g in gaps), gaps
    wait_until(lambda: led_dark_for(board, 2.2), 10, "the LED dark")
    start = len(board.console)
    dropped = time.time()
    proxy.forwarding = False  # the link goes silent both ways; the TCP connections stay open
    # no PINGRESP within keepalive/2 of a ping: the board closes the link and shows code 4
    board.wait_console("app: publish failed: OSError(110,)", 2 * keepalive + 2, start=start)
    [(first_lit, _), *_] = wait_until(lambda: lit(board, dropped), 3, "the LED lit")
    assert first_lit - dropped <= 1.5 * keepalive + 0.5  # + the LED task's 200 ms look and VM slack
    # reconnecting through the silent proxy: no CONNACK in mqtt_timeout_s, so code 2 follows 4
    board.wait_console(f"app: broker 127.0.0.1:{proxy.port}: OSError(110,)", 10, start=start)
    codes = wait_until(lambda: len(c := codes_from_dark(board, dropped)) >= 2 and c, 15, "two LED codes")
    assert codes[0] == 4, codes
    assert set(codes[1:]) == {2}, codes
    # the link back: the board reconnects through the proxy; readings flow again
    seen = len(subscriber.on(f"sensors/{CLIENT_ID}/i2c"))
    links = len(proxy.links)
    proxy.forwarding = True
    board.wait_console(f"app: connected to 127.0.0.1:{proxy.port}", 40, start=start)
    subscriber.wait_for(f"sensors/{CLIENT_ID}/i2c", count=seen + 1)  # announced again
    assert len(proxy.links) > links
    assert proxy.sent_by_board(CONNECT, link=-1)
    wait_until(lambda: led_dark_for(board, 2.2), 10, "the LED dark again")


def test_a_silent_link_is_noticed_while_publishing(broker, subscriber, proxy, make_board):
    # publishing every second: a PUBACK that does not come within keepalive/2 ends the link
    board = make_board(CHIP, broker=broker, config=device_config(CLIENT_ID, proxy.port, mqtt_keepalive_s=2,
                                                                 mqtt_timeout_s=2))
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=2)
    start = len(board.console)
    dropped = time.time()
    proxy.forwarding = False
    board.wait_console("app: publish failed: OSError(110,)", 5, start=start)
    assert time.time() - dropped <= 3.5
    proxy.forwarding = True
    seen = len(subscriber.on(f"sensors/{CLIENT_ID}/tsl2561"))
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=seen + 2, timeout=40)
    seqs = [json.loads(p)["seq"] for _, p, _, _ in subscriber.on(f"sensors/{CLIENT_ID}/tsl2561")]
    # the reading whose PUBACK never came is sent again: at least once, none lost, in order
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), seqs


# ---- 3: config.json: any content gives code 6; a change is applied while running ----

def test_settings_rejects_bad_numbers_and_files_with_a_message(tmp_path):
    good = device_config(CLIENT_ID, 1883)
    cases = {  # name: (file content, the message's start, or None: accepted)
        "good": (good, None),
        "bounds_low": (dict(good, mqtt_keepalive_s=0, publish_interval_s=1, mqtt_timeout_s=1, queue_size=1), None),
        "bounds_high": (dict(good, mqtt_keepalive_s=65535, publish_interval_s=86400, mqtt_timeout_s=300), None),
        "interval_float": (dict(good, publish_interval_s=2.5), None),
        "keepalive_neg": (dict(good, mqtt_keepalive_s=-1), "config.json: key mqtt_keepalive_s: use a whole number"),
        "keepalive_big": (dict(good, mqtt_keepalive_s=65536), "config.json: key mqtt_keepalive_s:"),
        "keepalive_float": (dict(good, mqtt_keepalive_s=2.5), "config.json: key mqtt_keepalive_s:"),
        "keepalive_bool": (dict(good, mqtt_keepalive_s=True), "config.json: key mqtt_keepalive_s:"),
        "interval_zero": (dict(good, publish_interval_s=0), "config.json: key publish_interval_s: use a number"),
        "interval_big": (dict(good, publish_interval_s=86401), "config.json: key publish_interval_s:"),
        "interval_str": (dict(good, publish_interval_s="10"), "config.json: key publish_interval_s:"),
        "timeout_zero": (dict(good, mqtt_timeout_s=0), "config.json: key mqtt_timeout_s:"),
        "queue_huge": (dict(good, queue_size=10**9), "config.json: key queue_size:"),
        "ntp_loopback": (dict(good, ntp_host="127.0.0.1", health_every=0), None),
        "ntp_number": (dict(good, ntp_host=123), "config.json: key ntp_host: use a host name"),
        "ntp_empty": (dict(good, ntp_host=""), "config.json: key ntp_host:"),
        "health_neg": (dict(good, health_every=-1), "config.json: key health_every: use a whole number"),
        "huge": (json.dumps(dict(good, padding="x" * 300_000)), "config.json is 300"),
        "deep": ("[" * 100_000, "config.json is 100000 bytes, over the limit of 2048"),
        "binary": (bytes(range(128, 256)).decode("latin-1"), "config.json is not valid JSON"),
        "list": ("[1, 2]", "config.json must hold a JSON object"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(content) if isinstance(content, dict) else content,
                                                     encoding="latin-1")
    out = run_micropython(
        "import os, settings\n"
        f"for name in {list(cases)!r}:\n"
        "    os.chdir(name)\n"
        "    try:\n"
        "        settings.load()\n"
        "        print(name, 'OK')\n"
        "    except settings.ConfigError as e:\n"
        "        print(name, e)\n"
        "    os.chdir('..')\n", tmp=tmp_path)
    results = dict(line.split(" ", 1) for line in out.splitlines())
    for name, (_, message) in cases.items():
        if message is None:
            assert results[name] == "OK", (name, results[name])
        else:
            assert results[name].startswith(message), (name, results[name])


@pytest.mark.parametrize(("content", "message"), [
    (json.dumps({"padding": "x" * 300_000}), "config.json is 300"),  # 300 KB
    ("[" * 100_000, "config.json is 100000 bytes, over the limit of 2048"),  # 100,000 levels
    ("[" * 2048, "config.json does not fit in memory"),  # under the limit, too deep for the heap
])
def test_led_code_6_for_any_content_and_the_firmware_goes_on(make_board, content, message):
    board = make_board(CHIP, config=content)
    wait_code(board, 6, timeout=30)
    assert message in board.console_text()
    assert board.running  # no crash, no reset loop


def test_a_changed_config_is_applied_without_a_power_cycle(broker, subscriber, proxy, make_board):
    board = make_board(CHIP, broker.port, broker)  # straight to the broker, a reading a second
    topic = f"sensors/{CLIENT_ID}/tsl2561"
    subscriber.wait_for(topic, count=3)
    pid = board.process.pid
    start = len(board.console)
    # the new config: the proxy's port, and a reading every 2 s
    write_config(board, device_config(CLIENT_ID, proxy.port, publish_interval_s=2))
    board.wait_console("app: config.json changed: restarting the tasks with it", 10, start=start)
    board.wait_console(f"app: connected to 127.0.0.1:{proxy.port}", 15, start=start)
    def reading_times():
        return [t for t, body in proxy.sent_by_board(PUBLISH) if publish_topic(body) == topic]
    times = wait_until(lambda: len(t := reading_times()) >= 4 and t, 20, "four readings through the proxy")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(1.7 <= g <= 2.5 for g in gaps[1:]), gaps  # publish_interval_s 2 applied
    # the same run of the firmware: no reset, seq goes on from before the change
    assert board.running
    assert board.process.pid == pid
    assert not [e for e in board.events() if e[1] == "reset"]
    seqs = [json.loads(p)["seq"] for _, p, _, _ in subscriber.on(topic)]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    # the old connection was closed with DISCONNECT: no last will "offline" on the way
    assert [p for _, p, _, _ in subscriber.on(f"status/{CLIENT_ID}")] == [b"online", b"online"]


def test_an_invalid_change_keeps_the_running_config_until_fixed(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker)
    topic = f"sensors/{CLIENT_ID}/tsl2561"
    subscriber.wait_for(topic, count=2)
    start = len(board.console)
    since = time.time()
    write_config(board, dict(device_config(CLIENT_ID, broker.port), mqtt_keepalive_s=-5))
    board.wait_console("key mqtt_keepalive_s", 10, start=start)
    assert "(still running the previous config)" in board.console_text()
    wait_code(board, 6, since=since, timeout=20)
    # the board goes on publishing with the config it has
    seen = len(subscriber.on(topic))
    subscriber.wait_for(topic, count=seen + 2)
    # fixed: applied, code 6 cleared
    write_config(board, dict(device_config(CLIENT_ID, broker.port), publish_interval_s=1.5))
    board.wait_console("app: config.json changed", 10, start=start)
    wait_until(lambda: led_dark_for(board, 2.2), 15, "the LED dark")
    assert board.running
