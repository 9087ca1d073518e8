"""Time: the firmware sets its clock with ntptime from a loopback SNTP responder
(virtual_huzzah.sntp; nothing here contacts a public time server) and readings carry "ts", their
capture time in Unix seconds, kept when they are published late. Without a set clock, no "ts"."""

import json
import socket
import struct
import time

import pytest

from tests.helpers import device_config, run_micropython, wait_until
from virtual_huzzah.board import AccessPoint, client_id_for
from virtual_huzzah.sntp import NTP_1970, SntpResponder

CHIP = 0xC0FF41
CLIENT_ID = client_id_for(CHIP)
OFFSET = -5000.0  # the responder's clock runs this far behind the host's: a ts from it is told apart


@pytest.fixture
def sntp():
    with SntpResponder(offset_s=OFFSET) as responder:
        yield responder


def test_the_responder_answers_an_sntp_request(sntp):
    query = bytearray(48)
    query[0] = 0x23  # version 4, mode 3
    query[40:48] = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (sntp.host, 123))
        answer = s.recv(64)
    assert len(answer) == 48
    assert (answer[0] & 0x07, answer[1]) == (4, 1)  # mode 4 (server), stratum 1
    assert answer[24:32] == query[40:48]  # originate = the client's transmit time
    seconds = struct.unpack("!I", answer[40:44])[0] - NTP_1970
    assert seconds == pytest.approx(time.time() + OFFSET, abs=2)
    assert sntp.requests == 1


def test_the_board_clock_counts_from_2000_until_set_and_ntptime_reaches_only_loopback(tmp_path, sntp):
    code = ("import time, ntptime\nprint(time.gmtime(0)[0], time.time() < 3600)\n"
            "ntptime.host = 'pool.ntp.org'\n"
            "try:\n    ntptime.settime()\nexcept OSError as e:\n    print('refused', e.errno)\n"
            f"ntptime.host = {sntp.host!r}\nntptime.settime()\nprint(time.time() + 946684800)\n")
    state = {"chip_id": "01ffc000", "mac": "5ccf7fc0ff01", "i2c": {}, "ap": None}
    epoch, refused, after = run_micropython(code, state, tmp_path).splitlines()
    assert epoch == "2000 True"
    assert refused == "refused 101"  # ENETUNREACH, before any lookup
    assert int(after) == pytest.approx(time.time() + OFFSET, abs=3)


def test_readings_carry_their_capture_time_and_keep_it_when_published_late(broker, subscriber, make_board, sntp):
    board = make_board(CHIP, broker.port, broker,
                       config=device_config(CLIENT_ID, broker.port, ntp_host=sntp.host, health_every=3))
    topic = f"sensors/{CLIENT_ID}/tsl2561"
    board.wait_console("app: clock set from", 15)
    assert sntp.requests >= 1

    def stamped():
        return [json.loads(p) for _, p, _, _ in subscriber.on(topic) if "ts" in json.loads(p)]
    first = wait_until(stamped, 10, "a reading with ts")[0]
    assert first["ts"] == pytest.approx(time.time() + OFFSET, abs=3)
    health = subscriber.wait_for(f"sensors/{CLIENT_ID}/system", count=3)[-1][1]
    assert json.loads(health)["ts"] == pytest.approx(time.time() + OFFSET, abs=3)
    # the access point goes: readings wait in the outbox; published later, they keep their capture time
    board.set_access_point(None)
    gone = time.time()
    wait_until(lambda: "not connected" in board.console_text(), 15, "Wi-Fi down")
    time.sleep(4)
    seen = len(subscriber.on(topic))
    board.set_access_point(AccessPoint())
    back = time.time()
    subscriber.wait_for(topic, count=seen + 3, timeout=20)
    late = [json.loads(p) for _, p, _, _ in subscriber.on(topic)[seen:]]
    captured_offline = [r for r in late if r["ts"] < back + OFFSET - 1]
    assert captured_offline, (gone, back, late)
    assert all(gone + OFFSET - 2 <= r["ts"] for r in captured_offline)
    ts = [r["ts"] for r in late]
    assert ts == sorted(ts)


def test_without_ntp_readings_have_no_ts(broker, subscriber, make_board):
    make_board(CHIP, broker.port, broker)  # device_config: ntp_host null
    readings = subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=2)
    assert all("ts" not in json.loads(p) for _, p, _, _ in readings)
    [(_, health, _, _)] = subscriber.wait_for(f"sensors/{CLIENT_ID}/system")
    assert "ts" not in json.loads(health)
