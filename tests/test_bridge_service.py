"""The bridge as a service: the systemd unit (systemd-analyze verify), sd_notify readiness and
watchdog pings from a real `sensornet bridge` process, and its Prometheus metrics over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, REPO, Sensornet, free_port, wait_until

pytestmark = pytest.mark.timeout(60)

UNIT = REPO / "bridge" / "sensornet-bridge.service"
DEVICE = "huzzah-00abc123"


def bridge_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    return {**env, "SENSORNET_BRIDGE_PASSWORD": BRIDGE_PASSWORD, **extra}


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: `make setup` installs systemd's tools"
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "RestartPreventExitStatus=2", "StateDirectory=sensornet"):
        assert line in text
    # the unit as installed, with ExecStart pointing at this checkout's venv instead of /opt/sensornet
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/sensornet/.venv/bin/sensornet", str(REPO / ".venv" / "bin" / "sensornet")))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # warnings (a misspelt key or value) fail too


def test_notifies_ready_pings_the_watchdog_and_says_stopping(broker, tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    proc = Sensornet("bridge", "--host", "127.0.0.1", "--port", str(broker.port), "--state-dir", str(tmp_path / "s"),
                     "--endpoint", f"tcp://127.0.0.1:{free_port()}",
                     env=bridge_env(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="1000000"))
    try:
        messages = []
        while sum(m.startswith("WATCHDOG=1") for m in messages) < 3:
            messages.append(sock.recv(4096).decode())
        assert messages[0] == "READY=1"
        assert "received" in messages[1]  # STATUS= with the counters
        assert proc.stop() == 0
        assert sock.recv(4096).decode() == "STOPPING=1"
    finally:
        proc.stop()
        sock.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("sensornet_bridge_")}


def test_prometheus_metrics(broker, tmp_path):
    broker.add_account(DEVICE, DEVICE_PASSWORD)
    metrics_port, tcp_port = free_port(), free_port()
    url = f"tcp://127.0.0.1:{tcp_port}"
    proc = Sensornet("bridge", "--host", "127.0.0.1", "--port", str(broker.port), "--state-dir", str(tmp_path / "s"),
                     "--endpoint", url, "--metrics-port", str(metrics_port), env=bridge_env())
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE)
    device.username_pw_set(DEVICE, DEVICE_PASSWORD)
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    try:
        proc.wait_line("subscribed:", "stderr", 15)
        for payload in (json.dumps({"lux": 1.0, "seq": 1}), '{"lux": 1e999}', json.dumps({"lux": 2.0, "seq": 2})):
            device.publish(f"sensors/{DEVICE}/tsl2561", payload, qos=1).wait_for_publish(5)
        got = wait_until(lambda: (m := scrape(metrics_port)).get("sensornet_bridge_received_total") == 3 and m,
                         10, "3 messages counted")
        label = f'{{endpoint="{url}"}}'
        assert got["sensornet_bridge_acknowledged_total"] == 3
        assert got['sensornet_bridge_rejected_total{reason="not_encodable"}'] == 1
        assert got["sensornet_bridge_backlog" + label] == 2
        assert got["sensornet_bridge_endpoint_up" + label] == 0
        assert got["sensornet_bridge_delivered_total" + label] == 0
        assert got["sensornet_bridge_stored_bytes"] > 0
        wait_until(lambda: scrape(metrics_port)["sensornet_bridge_oldest_unacked_age_seconds"] > 0, 5,
                   "the oldest unacknowledged envelope's age (sampled once a second)")
        endpoint = Sensornet("endpoint", "--host", "127.0.0.1", "--ws-port", "0", "--tcp-port", str(tcp_port))
        try:
            after = wait_until(lambda: (m := scrape(metrics_port)).get("sensornet_bridge_backlog" + label) == 0 and m,
                               15, "the endpoint caught up")
            assert after["sensornet_bridge_delivered_total" + label] == 2
            assert after["sensornet_bridge_endpoint_up" + label] == 1
            assert after["sensornet_bridge_stored_bytes"] == 0
        finally:
            endpoint.stop()
    finally:
        device.loop_stop()
        device.disconnect()
        proc.stop()
