"""The main job end to end, on real parts: Feather Huzzah firmware on virtual boards -> Mosquitto
(the repo's config) -> `sensornet bridge` -> `sensornet endpoint` over WebSocket and over TCP.
Checked on the envelopes the endpoint prints; and `make demo`'s own command, shortened."""

import json
import os
from datetime import datetime

import pytest

from tests.helpers import BRIDGE_PASSWORD, Sensornet, run_sensornet, start_endpoint, wait_until

pytestmark = pytest.mark.e2e

LUX = {0xC0FF01: 40.0, 0xC0FF02: 400.0, 0xC0FF03: 4000.0}


@pytest.fixture
def endpoint():
    """`sensornet endpoint --jsonl` on ports of its choosing; .urls: its (ws, tcp) URLs once it listens."""
    p, ws_port, tcp_port = start_endpoint("--jsonl")
    p.urls = (f"ws://127.0.0.1:{ws_port}/", f"tcp://127.0.0.1:{tcp_port}")
    yield p
    assert p.stop() == 0, "\n".join(p.stderr)  # SIGTERM: a clean stop


@pytest.fixture
def bridge(broker, endpoint):
    """`sensornet bridge` to both of the endpoint's URLs, once its subscriptions are granted."""
    env = dict(os.environ, SENSORNET_BRIDGE_PASSWORD=BRIDGE_PASSWORD)
    p = Sensornet("bridge", "--host", "127.0.0.1", "--port", str(broker.port), "--endpoint", endpoint.urls[0],
                  "--endpoint", endpoint.urls[1], env=env)
    try:
        p.wait_line("subscribed:", "stderr", 15)
    except BaseException:
        p.stop()
        raise
    yield p
    assert p.stop() == 0, "\n".join(p.stderr)  # SIGTERM: a clean stop


def envelopes(endpoint, via):
    return [e for e in map(json.loads, list(endpoint.stdout)) if e["via"] == via]


def test_readings_from_three_boards_reach_the_websocket_and_tcp_endpoints(broker, endpoint, bridge, make_board):
    boards = [make_board(chip, broker.port, broker, lux=lux) for chip, lux in LUX.items()]

    def complete():
        for via in ("ws", "tcp"):
            got = {(e["client_id"], e["kind"]) for e in envelopes(endpoint, via)}
            for b in boards:
                if not {(b.client_id, k) for k in ("connect", "status", "i2c", "tsl2561")} <= got:
                    return False
        return True
    wait_until(complete, 40, "every board's four topics at both endpoints", 0.2)

    for via in ("ws", "tcp"):
        for board in boards:
            mine = [e for e in envelopes(endpoint, via) if e["client_id"] == board.client_id]
            by_kind = {e["kind"]: e for e in mine}
            assert by_kind["connect"]["topic"] == f"connect/{board.client_id}"
            assert by_kind["connect"]["payload"] == board.mac
            assert by_kind["status"]["payload"] == "online"
            assert by_kind["i2c"]["payload"] == {"addresses": [0x39]}
            reading = by_kind["tsl2561"]
            assert reading["topic"] == f"sensors/{board.client_id}/tsl2561"
            assert reading["payload"]["lux"] == pytest.approx(board.lux, rel=0.02)
            assert reading["payload"]["gain"] == (1 if board.lux > 1000 else 16)
            assert datetime.fromisoformat(reading["received_at"].replace("Z", "+00:00")).tzinfo is not None
            seqs = [e["payload"]["seq"] for e in mine if e["kind"] == "tsl2561"]
            assert seqs == list(range(1, len(seqs) + 1))  # in order, none missing


def test_a_board_dying_reaches_the_endpoint_as_offline(broker, endpoint, bridge, make_board):
    board = make_board(0xC0FF01, broker.port, broker)
    wait_until(lambda: [e for e in envelopes(endpoint, "tcp") if e["kind"] == "tsl2561"], 30, "a reading")
    board.kill()
    wait_until(lambda: [e for e in envelopes(endpoint, "tcp") if e["kind"] == "status" and e["payload"] == "offline"],
               20, "status offline at the endpoint")


def test_sensornet_demo_exits_0_with_readings_from_every_board(tmp_path):
    result = run_sensornet("demo", "--duration", "12", "--interval", "1", "--state-dir", str(tmp_path / "demo"),
                           timeout=90)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: readings from all 3 boards" in result.stdout
    for cid in ("huzzah-01ffc000", "huzzah-02ffc000", "huzzah-03ffc000"):
        assert f" ws sensors/{cid}/tsl2561 " in result.stdout
        assert f" tcp sensors/{cid}/tsl2561 " in result.stdout
    # no password on the terminal; the files holding them are the owner's only
    state = tmp_path / "demo"
    passwords = [line.split()[1] for line in (state / "credentials.txt").read_text().splitlines()]
    assert passwords
    assert not [p for p in passwords if p in result.stdout + result.stderr]
    for secret in [state / "credentials.txt", state / "mosquitto_sub", *state.glob("boards/*/fs/config.json")]:
        assert secret.stat().st_mode & 0o077 == 0, secret
    assert list(state.glob("boards/*/fs/config.json"))
