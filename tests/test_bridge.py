"""sensornet.bridge against a real Mosquitto (broker fixture) and real WebSocket/TCP endpoints.

Devices are plain paho clients on their own broker accounts, publishing on their own topics.
Nothing is mocked: what an endpoint receives went broker -> bridge -> socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os

import paho.mqtt.client as mqtt
import pytest

from sensornet.bridge import Bridge
from sensornet.bridge_config import SCHEMA, BridgeConfig, ConfigError, MqttSettings, load_config
from sensornet.endpoint import Endpoint
from sensornet.mqttloop import BufferedSocket
from sensornet.outbox import Backoff
from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, REPO, Sensornet, free_port, run_sensornet, wait_until_async

pytestmark = pytest.mark.timeout(60)

DEVICE = "huzzah-00c0ffee"
TSL = f"sensors/{DEVICE}/tsl2561"


# ---- helpers ----

@pytest.fixture(autouse=True)
def state_directory(tmp_path, monkeypatch):
    """Every Bridge here keeps its store in the test's own directory ($STATE_DIRECTORY)."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def device(broker):
    """A connected paho client on the device's own account (client id = account name)."""
    broker.add_account(DEVICE, DEVICE_PASSWORD)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE)
    client.username_pw_set(DEVICE, DEVICE_PASSWORD)
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


async def publish(client: mqtt.Client, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
    """Publish and wait for the broker's PUBACK (off the event loop)."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published()


def reading(seq: int, lux: float | None = 10.0) -> str:
    return json.dumps({"lux": lux, "broadband": 100 + seq, "ir": 20, "gain": 16, "integration_ms": 402, "seq": seq})


def config(broker, *endpoints: str, **kwargs) -> BridgeConfig:
    mqtt_settings = MqttSettings(host=broker.host, port=broker.port, username="bridge", password=BRIDGE_PASSWORD,
                                 client_id=kwargs.pop("client_id", "test-bridge"), keepalive_s=10)
    return BridgeConfig(mqtt=mqtt_settings, endpoints=endpoints, **kwargs)


def fast_bridge(cfg: BridgeConfig, **kwargs) -> Bridge:
    """A Bridge that retries endpoints every 0.05-0.3 s, so tests need not wait long."""
    return Bridge(cfg, backoff=lambda: Backoff(initial=0.05, cap=0.3), **kwargs)


@contextlib.asynccontextmanager
async def running(bridge: Bridge):
    """Run `bridge` in a task until the block ends; yields once its subscriptions are granted."""
    task = asyncio.create_task(bridge.run())
    try:
        assert await bridge.wait_subscribed(10), "bridge did not subscribe within 10 s"
        yield bridge
    finally:
        await bridge.stop()
        await task


async def collect(endpoint: Endpoint, count: int, wait_s: float = 5.0) -> dict[str, list[dict]]:
    """Wait up to `wait_s` s for each of `count` envelopes; return them grouped by via, in arrival order."""
    by_via: dict[str, list[dict]] = collections.defaultdict(list)
    for _ in range(count):
        received = await endpoint.get(wait_s)
        by_via[received.via].append(received.envelope)
    return by_via


def seqs(envelopes: list[dict]) -> list[int]:
    return [e["payload"]["seq"] for e in envelopes]


# ---- forwarding ----

def test_forwards_every_contract_topic_to_ws_and_tcp(broker, device):
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0) as ep:
            async with running(fast_bridge(config(broker, ep.ws_url, ep.tcp_url))) as bridge:
                await publish(device, f"connect/{DEVICE}", "aa:bb:cc:dd:ee:ff", retain=True)
                await publish(device, f"status/{DEVICE}", "online", qos=0, retain=True)
                await publish(device, TSL, reading(1, lux=None))
                await publish(device, f"sensors/{DEVICE}/i2c", '{"addresses": [57]}')
                got = await collect(ep, 8)
            assert bridge.stats.received == 4
            assert not bridge.stats.rejected
        for via in ("ws", "tcp"):
            envs = got[via]
            assert [(e["topic"], e["client_id"], e["kind"]) for e in envs] == [
                (f"connect/{DEVICE}", DEVICE, "connect"), (f"status/{DEVICE}", DEVICE, "status"),
                (TSL, DEVICE, "tsl2561"), (f"sensors/{DEVICE}/i2c", DEVICE, "i2c")]
            assert [e["payload"] for e in envs] == ["aa:bb:cc:dd:ee:ff", "online", json.loads(reading(1, lux=None)),
                                                    {"addresses": [57]}]
            assert all(e["received_at"].endswith("Z") and len(e["received_at"]) == 24 for e in envs)
        assert got["ws"] == got["tcp"]
    asyncio.run(scenario())


def test_retained_connect_reaches_a_bridge_that_subscribes_later(broker, device):
    async def scenario():
        await publish(device, f"connect/{DEVICE}", "aa:bb:cc:dd:ee:ff", retain=True)
        async with Endpoint("127.0.0.1", 0, 0) as ep, running(fast_bridge(config(broker, ep.tcp_url))):
            received = await ep.get()
        assert received.envelope["topic"] == f"connect/{DEVICE}"
        assert received.envelope["payload"] == "aa:bb:cc:dd:ee:ff"
    asyncio.run(scenario())


def test_rejected_messages_are_counted_and_good_ones_around_them_arrive(broker, device):
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0) as ep:
            cfg = config(broker, ep.ws_url, ep.tcp_url, max_payload_bytes=300)
            async with running(fast_bridge(cfg)) as bridge:
                await publish(device, TSL, reading(1))
                await publish(device, TSL, b'{"lux": 1.0,')                             # bad_json
                await publish(device, TSL, reading(2))
                await publish(device, TSL, b'{"lux": "\xff"}')                          # not_utf8
                await publish(device, TSL, reading(3))
                await publish(device, TSL, json.dumps({"pad": "x" * 400}))             # too_large
                await publish(device, f"sensors/{DEVICE}/has space", reading(9))        # bad_topic
                await publish(device, TSL, reading(4))
                await publish(device, TSL, b'{"lux": 1e999, "seq": 99}')                # not_encodable
                await publish(device, TSL, reading(5))
                await publish(device, TSL, b"[" * 140 + b"]" * 140)                      # too_deep
                await publish(device, TSL, reading(6))
                got = await collect(ep, 12)
                await wait_until_async(lambda: bridge.stats.received == 12, 5, "12 messages received")
            assert bridge.stats.rejected == {"bad_json": 1, "not_utf8": 1, "too_large": 1, "bad_topic": 1,
                                             "not_encodable": 1, "too_deep": 1}
            assert bridge.stats.acknowledged == 12
        assert seqs(got["ws"]) == seqs(got["tcp"]) == [1, 2, 3, 4, 5, 6]
    asyncio.run(scenario())


# ---- endpoints down, restarted, overflowing ----

def test_endpoint_down_at_start_gets_queued_messages_while_other_keeps_receiving(broker, device):
    async def scenario():
        tcp_port = free_port()
        async with Endpoint("127.0.0.1", 0, 0) as ws_ep:
            tcp_url = f"tcp://127.0.0.1:{tcp_port}"
            async with running(fast_bridge(config(broker, ws_ep.ws_url, tcp_url))) as bridge:
                for seq in range(1, 6):
                    await publish(device, TSL, reading(seq))
                live = await collect(ws_ep, 5)
                assert seqs(live["ws"]) == [1, 2, 3, 4, 5]
                assert bridge.stats.delivered[tcp_url] == 0
                async with Endpoint("127.0.0.1", 0, tcp_port) as tcp_ep:
                    late = await collect(tcp_ep, 5, wait_s=10)
                    assert seqs(late["tcp"]) == [1, 2, 3, 4, 5]
                    await publish(device, TSL, reading(6))
                    assert seqs((await collect(tcp_ep, 1))["tcp"]) == [6]
                    assert seqs((await collect(ws_ep, 1))["ws"]) == [6]
    asyncio.run(scenario())


@pytest.mark.parametrize("via", ["ws", "tcp"])
def test_endpoint_restart_loses_nothing(broker, device, via):
    async def scenario():
        ep = await Endpoint("127.0.0.1", 0, 0).start()
        url = ep.ws_url if via == "ws" else ep.tcp_url
        async with running(fast_bridge(config(broker, url))) as bridge:
            await publish(device, TSL, reading(1))
            assert seqs((await collect(ep, 1))[via]) == [1]
            await wait_until_async(lambda: bridge.stats.delivered[url] == 1, 5, "the endpoint's acknowledgement")
            await ep.stop()
            for seq in (2, 3, 4):
                await publish(device, TSL, reading(seq))
            await wait_until_async(lambda: bridge.stats.received == 4, 5, "4 messages received")
            ep = await Endpoint("127.0.0.1", ep.ws_port, ep.tcp_port).start()
            try:
                assert seqs((await collect(ep, 3, wait_s=10))[via]) == [2, 3, 4]
            finally:
                await ep.stop()
    asyncio.run(scenario())


def test_full_store_stops_acknowledging_the_broker_and_loses_nothing(broker, device):
    async def scenario():
        tcp_port = free_port()
        url = f"tcp://127.0.0.1:{tcp_port}"
        # about 270 bytes per envelope: full after the second; the broker holds the rest
        async with running(fast_bridge(config(broker, url, store_max_bytes=500))) as bridge:
            for seq in (1, 2):
                await publish(device, TSL, reading(seq))
            await wait_until_async(lambda: bridge.stats.acknowledged == 2, 5, "2 messages stored")
            for seq in range(3, 9):
                await publish(device, TSL, reading(seq))
            await wait_until_async(lambda: bridge.stats.full == 1, 5, "the store full")
            assert bridge.stats.acknowledged == 2
            async with Endpoint("127.0.0.1", 0, tcp_port) as ep:
                assert seqs((await collect(ep, 8, wait_s=10))["tcp"]) == list(range(1, 9))
            assert bridge.stats.acknowledged == 8
    asyncio.run(scenario())


class SilentReceiver:
    """A plain TCP receiver that never acknowledges: collects the lines it is sent."""

    def __init__(self) -> None:
        self.lines: list[dict] = []

    async def __aenter__(self) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                self.lines.append(json.loads(line))
            writer.close()
        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def test_endpoint_without_acks_counts_what_was_written_and_an_undeclared_one_keeps_its_backlog(broker, device):
    async def scenario():
        declared, undeclared = SilentReceiver(), SilentReceiver()
        async with declared as silent_url, undeclared as other_url:
            cfg = config(broker, silent_url, other_url, endpoints_without_ack=frozenset({silent_url}))
            async with running(fast_bridge(cfg, drain_timeout=0.1)) as bridge:
                for seq in (1, 2, 3):
                    await publish(device, TSL, reading(seq))
                await wait_until_async(lambda: bridge.stats.delivered[silent_url] == 3, 5, "3 written to the socket")
                await wait_until_async(lambda: len(undeclared.lines) == 3, 5, "3 sent to the other")
                assert bridge.store.backlog(silent_url) == 0
                # it should acknowledge but does not: its cursor stays, so the envelopes stay stored
                assert bridge.store.backlog(other_url) == 3
                assert bridge.stats.delivered[other_url] == 0
        assert [e["payload"]["seq"] for e in declared.lines] == [1, 2, 3]
    asyncio.run(scenario())


# ---- bridge restarts ----

def test_restart_with_same_client_id_gets_messages_published_while_down(broker, device):
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0) as ep:
            cfg = config(broker, ep.tcp_url, client_id="restart-bridge")
            async with running(fast_bridge(cfg)):
                await publish(device, TSL, reading(1))
                assert seqs((await collect(ep, 1))["tcp"]) == [1]
            for seq in (2, 3, 4):  # the bridge is down; its persistent session queues these
                await publish(device, TSL, reading(seq))
            async with running(fast_bridge(cfg)) as bridge:
                assert seqs((await collect(ep, 3))["tcp"]) == [2, 3, 4]
                await publish(device, TSL, reading(5))
                assert seqs((await collect(ep, 1))["tcp"]) == [5]
            # seq 1 was acknowledged (manual ack) before the restart, so it was not redelivered.
            assert bridge.stats.received == 4
            assert ep.received.empty()
    asyncio.run(scenario())


def test_broker_restart_bridge_reconnects_and_resumes_session(broker, device):
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0) as ep, running(fast_bridge(config(broker, ep.tcp_url))) as bridge:
            await publish(device, TSL, reading(1))
            assert seqs((await collect(ep, 1))["tcp"]) == [1]
            await asyncio.to_thread(broker.stop)   # SIGTERM: Mosquitto saves sessions to its database
            await asyncio.to_thread(broker.start)
            await wait_until_async(device.is_connected, 10, "the device connected again")
            for seq in (2, 3):  # possibly before the bridge is back: its session queues them
                await publish(device, TSL, reading(seq))
            assert seqs((await collect(ep, 2, wait_s=15))["tcp"]) == [2, 3]
            assert await bridge.wait_subscribed(5)
    asyncio.run(scenario())


def test_stored_envelopes_are_sent_after_restart(broker, device, state_directory):
    async def scenario():
        tcp_port = free_port()
        url = f"tcp://127.0.0.1:{tcp_port}"
        cfg = config(broker, url)
        async with running(fast_bridge(cfg, drain_timeout=0.1)) as bridge:
            for seq in (1, 2, 3):
                await publish(device, TSL, reading(seq))
            await wait_until_async(lambda: bridge.stats.acknowledged == 3, 5, "3 messages stored and acknowledged")
        assert list(state_directory.glob("store-*.sqlite3"))
        async with Endpoint("127.0.0.1", 0, tcp_port) as ep, running(fast_bridge(cfg)) as again:
            assert seqs((await collect(ep, 3))["tcp"]) == [1, 2, 3]
            await publish(device, TSL, reading(4))
            assert seqs((await collect(ep, 1))["tcp"]) == [4]
            await wait_until_async(lambda: again.store.backlog(url) == 0, 5, "every envelope acknowledged")
        assert again.stats.received == 1  # 1-3 came from the store, not from the broker again
    asyncio.run(scenario())


# ---- the real command ----

def bridge_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SENSORNET_BRIDGE_PASSWORD", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
    env.update(extra)
    return env


def test_command_forwards_and_stops_cleanly_on_sigterm(broker, device):
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0) as ep:
            proc = Sensornet("bridge", "--host", broker.host, "--port", str(broker.port), "--client-id", "cli-bridge",
                             "--endpoint", ep.ws_url, env=bridge_env(SENSORNET_BRIDGE_PASSWORD=BRIDGE_PASSWORD))
            try:
                subscribed = await asyncio.to_thread(proc.wait_line, "subscribed:", "stderr", 10)
                await publish(device, TSL, reading(1))
                assert (await ep.get()).envelope["payload"]["seq"] == 1
                before_stop = len(proc.stderr)
                assert await asyncio.to_thread(proc.stop, 10) == 0  # SIGTERM; no SIGKILL needed
            finally:
                await asyncio.to_thread(proc.stop)
        start = next(line for line in proc.stderr if "starting:" in line)
        assert f"{broker.host}:{broker.port}" in start
        assert ep.ws_url in start
        assert "'cli-bridge'" in start
        assert proc.stderr.index(start) < proc.stderr.index(subscribed)
        assert [line for line in proc.stderr[before_stop:] if "stopped:" in line]
    asyncio.run(scenario())


GOOD = '[mqtt]\npassword = "x"\n[bridge]\nendpoints = ["ws://127.0.0.1:8765"]\n'


@pytest.mark.parametrize(("toml", "flags", "expected"), [
    ('[mqtt]\nhots = "pi"\n[bridge]\nendpoints = ["ws://a:1"]\n', [], "[mqtt] unknown key 'hots'"),
    ('[mqtt]\nport = "1883"\n[bridge]\nendpoints = ["ws://a:1"]\n', [], "[mqtt] port: expected an integer"),
    ('[bridge]\nendpoints = ["ws://a:1", "http://x"]\n', [],
     "[bridge] endpoints[1]: 'http://x' is not ws://, wss:// or tcp://; use"),
    ('[bridge]\nendpoints = ["tcp://a"]\n', [], "[bridge] endpoints[0]: 'tcp://a'"),
    ('[mqtt]\nhost = "pi"\n', [], "[bridge] endpoints: no endpoints"),
    ('[mqtt]\npassword_file = "missing.password"\n[bridge]\nendpoints = ["ws://a:1"]\n', [],
     "[mqtt] password_file: cannot read password file"),
    ('[mqtt]\nport = 70000\n[bridge]\nendpoints = ["ws://a:1"]\n', [], "[mqtt] port: 70000 is out of range"),
    ('[mqtt\nport = 1\n', [], "not valid TOML"),
    ('[bridge]\nendpoints = "ws://a:1"\n', [], "[bridge] endpoints: expected a list"),
    ('[brigde]\n', [], "unknown table [brigde]"),
    ('[mqtt]\nusername = ""\n[bridge]\nendpoints = ["ws://a:1"]\n', [], "[mqtt] username: empty"),
    ('[bridge]\nendpoints = ["ws://a:1"]\nstate_dir = ""\n', [], "[bridge] state_dir: empty"),
    ('[bridge]\nendpoints = ["ws://a:1"]\nendpoints_without_ack = ["tcp://b:2"]\n', [],
     "[bridge] endpoints_without_ack[0]: 'tcp://b:2' is not one of [bridge] endpoints"),
    ('[bridge]\nendpoints = ["ws://a:1"]\nshare_group = "a/b"\n', [], "[bridge] share_group: 'a/b'"),
    (GOOD, ["--username", ""], "--username: empty"),
    (GOOD, ["--port", "0"], "--port: 0 is out of range"),
    (GOOD, ["--endpoint", "mqtt://x:1"], "--endpoint: 'mqtt://x:1' is not ws://"),
    (GOOD, ["--password-file", "/nonexistent/pw"], "--password-file: cannot read password file"),
    (None, ["--endpoint", "ws://a:1"], "--config"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, toml, flags, expected):
    args = ["bridge", *flags]
    if toml is not None:
        (tmp_path / "bridge.toml").write_text(toml)
        args += ["--config", "bridge.toml"]
    else:
        args += ["--config", "nonexistent.toml"]
        expected = "nonexistent.toml: cannot read config file"
    result = run_sensornet(*args, cwd=tmp_path, env=bridge_env(), timeout=30)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    if toml is not None and not flags:
        assert "bridge.toml: " in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one message, one line
    assert result.stdout == ""


@pytest.mark.parametrize("content", [b'[bridge]\nendpoints = ["ws://a:1"]\n# caf\xe9\n', b"\xff\xfe[\x00"])
def test_config_that_is_not_utf8_exits_2_naming_the_file(tmp_path, content):
    (tmp_path / "bridge.toml").write_bytes(content)
    result = run_sensornet("bridge", "--config", "bridge.toml", cwd=tmp_path, env=bridge_env(), timeout=30)
    assert result.returncode == 2, result.stderr
    assert "bridge.toml: cannot read config file: not UTF-8" in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_config_that_is_a_directory_exits_2_naming_it(tmp_path):
    (tmp_path / "bridge.toml").mkdir()
    result = run_sensornet("bridge", "--config", "bridge.toml", cwd=tmp_path, env=bridge_env(), timeout=30)
    assert result.returncode == 2, result.stderr
    assert "bridge.toml: cannot read config file" in result.stderr


# ---- configuration (in process) ----

def test_example_config_is_valid_and_documents_every_key():
    example = REPO / "bridge" / "bridge.example.toml"
    cfg, _ = load_config(["--config", str(example)], environ={"SENSORNET_BRIDGE_PASSWORD": "pw"})
    assert cfg.mqtt.client_id == "bridge"
    assert cfg.mqtt.port == 1883
    assert cfg.endpoints
    assert cfg.store_max_bytes == 64 * 1024 * 1024
    assert cfg.max_payload_bytes == 16384
    text = example.read_text()
    for table, keys in SCHEMA.items():
        assert f"[{table}]" in text
        for key in keys:
            assert f"{key} =" in text, key


def test_flags_override_the_file(tmp_path):
    (tmp_path / "b.toml").write_text('[mqtt]\nhost = "pi"\nport = 1884\nclient_id = "a"\n'
                                     '[bridge]\nendpoints = ["ws://x:1"]\n')
    cfg, _ = load_config(["--config", str(tmp_path / "b.toml"), "--host", "h", "--port", "2000",
                          "--client-id", "b", "--endpoint", "tcp://e:1", "--endpoint", "wss://f"], environ={})
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.client_id) == ("h", 2000, "b")
    assert cfg.endpoints == ("tcp://e:1", "wss://f")


def test_password_precedence(tmp_path):
    (tmp_path / "flag.pw").write_text("from-flag\n")
    (tmp_path / "file.pw").write_text("from-file\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt-password").write_text("from-credential")
    (tmp_path / "creds" / "file.pw").write_text("from-credential-dir\n")
    conf = tmp_path / "b.toml"
    conf.write_text('[mqtt]\npassword_file = "file.pw"\n[bridge]\nendpoints = ["ws://x:1"]\n')
    bare = tmp_path / "bare.toml"
    bare.write_text('[bridge]\nendpoints = ["ws://x:1"]\n')
    env = {"SENSORNET_BRIDGE_PASSWORD": "from-env"}
    creds = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}

    def password(args, environ):
        return load_config(args, environ=environ)[0].mqtt.password

    assert password(["--config", str(conf), "--password-file", str(tmp_path / "flag.pw")], env) == "from-flag"
    assert password(["--config", str(conf)], env) == "from-env"
    assert password(["--config", str(conf)], {}) == "from-file"  # relative to the config file
    assert password(["--config", str(conf)], creds) == "from-credential-dir"  # relative to $CREDENTIALS_DIRECTORY
    assert password(["--config", str(bare)], creds) == "from-credential"
    assert password(["--config", str(bare)], {}) is None


def test_password_and_password_file_together_is_an_error(tmp_path):
    conf = tmp_path / "b.toml"
    conf.write_text('[mqtt]\npassword = "a"\npassword_file = "b"\n[bridge]\nendpoints = ["ws://x:1"]\n')
    with pytest.raises(ConfigError, match=r"\[mqtt\] password and password_file are both set"):
        load_config(["--config", str(conf)], environ={})


def test_duplicate_endpoint_is_an_error():
    with pytest.raises(ConfigError, match="given twice"):
        load_config(["--endpoint", "ws://x:1", "--endpoint", "ws://x:1"], environ={})


# ---- pure parts ----

def test_backoff_doubles_to_cap_with_jitter_and_resets():
    top = Backoff(initial=0.5, cap=30, rng=lambda: 0.999999)
    assert [round(top.next(), 2) for _ in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    bottom = Backoff(initial=0.5, cap=30, rng=lambda: 0.0)
    assert [bottom.next() for _ in range(3)] == [0.25, 0.5, 1.0]
    bottom.reset()
    assert bottom.next() == 0.25


class _FakeSocket:
    """A non-blocking socket's recv/send: `incoming` chunks, then BlockingIOError; send takes `room` bytes a call."""

    def __init__(self, incoming: list[bytes], room: int = 1 << 20):
        self.incoming, self.room, self.sent = incoming, room, bytearray()

    def recv(self, size: int) -> bytes:
        if not self.incoming:
            raise BlockingIOError
        return self.incoming.pop(0)[:size]

    def send(self, data: bytes | bytearray) -> int:
        if not self.room:
            raise BlockingIOError
        taken = bytes(data[:self.room])
        self.sent += taken
        return len(taken)

    def close(self) -> None:
        pass


def test_buffered_socket_serves_paho_small_reads_from_one_recv_and_gathers_writes():
    sock = BufferedSocket(_FakeSocket([b"\x30\x05hello", b"", b"late"]))
    assert sock.recv(1) == b"\x30"
    assert sock.buffered
    assert sock.recv(1) == b"\x05"
    assert sock.recv(10) == b"hello"
    assert not sock.buffered
    assert sock.recv(1) == b""  # the peer closed: paho sees the connection lost
    assert sock.recv(8) == b"late"
    with pytest.raises(BlockingIOError):  # nothing to read: paho's "try again later"
        sock.recv(1)
    fake = _FakeSocket([], room=3)
    out = BufferedSocket(fake)
    assert out.send(b"\x40\x02\x00\x01") == 4
    assert out.send(b"\x40\x02\x00\x02") == 4
    assert fake.sent == b""
    assert out.flush()
    assert fake.sent == b"\x40\x02\x00\x01\x40\x02\x00\x02"
    fake.room = 0
    out.send(b"\xe0\x00")
    assert not out.flush()  # the socket is full: the rest waits for the next writable event
    fake.room = 8
    out.close()  # paho closes right after its DISCONNECT: what is buffered goes first
    assert fake.sent.endswith(b"\xe0\x00")
