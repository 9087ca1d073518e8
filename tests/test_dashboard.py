"""`sensornet dashboard` on real parts: the repo's Mosquitto, virtual boards running the firmware, or
a publisher with a device's account (for the BME280 and health topics today's firmware does not
publish yet), and the page in a real headless browser: Debian's chromium driven by playwright.

The screenshot of the page with three boards is kept in .cache/artifacts/dashboard.png
(git-ignored), the one with health figures in .cache/artifacts/dashboard-health.png and the demo's
(`make demo`) in .cache/artifacts/dashboard-demo.png.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from sensornet.dashboard_store import Store
from sensornet.dashboard_web import QUANTITY_NAMES
from tests.dashboard_helpers import Dashboard, Publisher
from tests.helpers import DEVICE_PASSWORD, REPO, Sensornet, run_sensornet, wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / ".cache" / "artifacts"
LUX = {0xC0FF01: 40.0, 0xC0FF02: 400.0, 0xC0FF03: 4000.0}
PUBLISHER = "huzzah-0000beef"  # a device account with no board: publishes what the firmware does not yet


@pytest.fixture
def dashboard(broker, tmp_path):
    d = Dashboard(broker, tmp_path / "history.sqlite3")
    yield d
    assert d.stop() == 0, "\n".join(d.process.stderr[-20:])


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium under playwright (no browser downloaded: executable_path)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    pg = context.new_page()
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == [], errors  # no JavaScript error on the page


def card(page, client_id):
    return page.locator(f'.card[data-client-id="{client_id}"]')


def reading_text(page, client_id, quantity):
    return card(page, client_id).locator(f'.readings dd[data-quantity="{quantity}"]').text_content(timeout=1000)


@pytest.mark.e2e
def test_three_boards_move_live_and_one_going_offline_shows(broker, dashboard, make_board, page):
    boards = [make_board(chip, broker.port, broker, lux=lux) for chip, lux in LUX.items()]
    page.goto(dashboard.url)
    for b in boards:
        c = card(page, b.client_id)
        c.locator(".status.online").wait_for(timeout=30000)
        assert c.locator(".mac").text_content() == b.mac
        c.locator('.readings dd[data-quantity="lux"]').wait_for(timeout=20000)
    first = {b.client_id: reading_text(page, b.client_id, "lux") for b in boards}
    for b in boards:
        assert float(first[b.client_id].split()[0]) == pytest.approx(b.lux, rel=0.02)
        assert first[b.client_id].endswith(" lx")
        b.set_light(b.lux * 2)
    for b in boards:  # readings that change, live over the WebSocket
        wait_until(lambda b=b: float(reading_text(page, b.client_id, "lux").split()[0])
                   == pytest.approx(b.lux, rel=0.02), 20, f"{b.client_id}'s card showing {b.lux} lx")
    # a live chart per quantity, one series per board (uPlot's legend names them)
    chart = page.locator('.chart[data-quantity="lux"]')
    assert chart.locator("canvas").count() >= 1
    for b in boards:
        assert chart.locator(".u-legend").get_by_text(b.client_id).count() == 1
    wait_until(lambda: int(chart.get_attribute("data-points")) >= 6, 20, "points on the lux chart")
    assert page.locator('.chart[data-quantity="broadband"]').count() == 1

    boards[0].kill()  # the broker publishes its last will: status offline
    card(page, boards[0].client_id).locator(".status.offline").wait_for(timeout=20000)
    assert card(page, boards[1].client_id).locator(".status").text_content() == "online"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_health_bme280_history_and_csv_in_the_browser(broker, dashboard, page):
    broker.add_account(PUBLISHER, DEVICE_PASSWORD)
    device = Publisher(broker.port, PUBLISHER)
    try:
        device.publish(f"connect/{PUBLISHER}", "5c:cf:7f:ef:be:00", retain=True)
        device.publish(f"status/{PUBLISHER}", "online", retain=True)
        for i, t in enumerate((21.5, 22.0, 22.5)):
            device.publish(f"sensors/{PUBLISHER}/bme280",
                           {"temperature_c": t, "humidity_pct": 40.0 + i, "pressure_hpa": 1013.2, "seq": i + 1})
        # counted and logged, never a crash; the good neighbours go on arriving
        device.publish(f"sensors/{PUBLISHER}/bme280", b"not json")
        device.publish(f"sensors/{PUBLISHER}/bme280", b"\xff\xfe")
        device.publish(f"sensors/{PUBLISHER}/bme280", b'{"temperature_c": NaN, "seq": 9}')  # no quantity in it
        device.publish(f"sensors/{PUBLISHER}/system",
                       {"uptime_s": 3600, "heap_free": 17312, "rssi_dbm": -61, "reset_cause": "wdt",
                        "version": "0.2.0", "dropped": 0, "wifi_reconnects": 1, "mqtt_reconnects": 2, "fault": 5})
        # a device's reply to a bad command (broker/acl: the device writes its own status/<client_id>/error)
        device.publish(f"status/{PUBLISHER}/error", {"cmd": "interval", "error": "interval: 0 is out of range"})
        wait_until(lambda: [d for d in dashboard.json("api/devices") if d["health"]], 10,
                   "the device's health stored")
        page.goto(dashboard.url)  # opened after the readings: the chart comes from the history (SQLite)
        c = card(page, PUBLISHER)
        c.locator(".status.online").wait_for(timeout=10000)
        assert c.locator(".fault").text_content() == "sensor (I2C) error"
        c.locator(".error").wait_for(timeout=10000)
        assert c.locator(".error").text_content() == "command interval: interval: 0 is out of range"
        assert c.locator(".health-rssi_dbm").text_content() == "-61 dBm"
        assert c.locator(".health-reset_cause").text_content() == "wdt"
        assert c.locator(".health-heap_free").text_content() == "17312 B"
        for quantity in ("temperature_c", "humidity_pct", "pressure_hpa"):
            chart = page.locator(f'.chart[data-quantity="{quantity}"]')
            chart.wait_for(timeout=10000)
            assert chart.get_attribute("data-points") == "3"
        assert page.locator('.chart[data-quantity="rssi_dbm"]').count() == 0  # health: on the card, not charted
        device.publish(f"sensors/{PUBLISHER}/bme280", {"temperature_c": 23.25, "humidity_pct": 44.0,
                                                       "pressure_hpa": 1013.0, "seq": 4})
        wait_until(lambda: reading_text(page, PUBLISHER, "temperature_c") == "23.25 °C", 10, "the live temperature")
        wait_until(lambda: page.locator('.chart[data-quantity="temperature_c"]').get_attribute("data-points") == "4",
                   10, "the live point on the chart")
        page.select_option("#range", "86400")
        with page.expect_download() as download:
            page.click("#csv")
        text = download.value.path().read_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-health.png"), full_page=True)
    finally:
        device.close()
    rows = list(csv.DictReader(io.StringIO(text)))
    temps = [r for r in rows if r["quantity"] == "temperature_c"]
    assert [float(r["value"]) for r in temps] == [21.5, 22.0, 22.5, 23.25]
    assert {r["client_id"] for r in rows} == {PUBLISHER}
    assert temps[0]["received_at"].endswith("Z")
    assert temps[0]["sensor"] == "bme280"
    assert any("bad_json" in line for line in dashboard.process.stderr)
    assert any("not_utf8" in line for line in dashboard.process.stderr)


def test_a_token_guards_the_data_and_the_websocket(broker, tmp_path):
    (tmp_path / "token").write_text("s3cret-token\n")
    d = Dashboard(broker, tmp_path / "h.sqlite3", "--token-file", str(tmp_path / "token"))
    try:
        assert d.get("api/devices")[0] == 403
        assert d.get("api/devices?token=wrong")[0] == 403
        assert d.get("api/history.csv?range=60")[0] == 403
        assert d.get("ws")[0] == 403
        assert d.get("api/devices?token=s3cret-token")[0] == 200
        assert d.get("api/devices", {"Authorization": "Bearer s3cret-token"})[0] == 200
        status, _, body = d.get("")  # the page itself holds no data
        assert status == 200
        assert b"<title>sensornet dashboard</title>" in body
        assert d.get("vendor/uPlot.iife.min.js")[0] == 200  # served from the install, never a CDN
    finally:
        assert d.stop() == 0


def test_without_a_token_only_loopback_names_and_the_pages_own_origin_get_in(dashboard):
    assert dashboard.get("api/devices")[0] == 200
    assert dashboard.get("api/devices", {"Host": "evil.example:80"})[0] == 403  # DNS rebinding
    ws_url = dashboard.url.replace("http://", "ws://") + "ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(ws_url, origin=dashboard.url.rstrip("/"), open_timeout=10) as ws:  # the page's own origin
        assert json.loads(ws.recv(10)) == {"type": "devices", "devices": [], "quantities": QUANTITY_NAMES}


@pytest.mark.parametrize(("flags", "env", "named"), [
    (("--host", "0.0.0.0"), {}, "--host: 0.0.0.0 is not a loopback address"),
    (("--retention-days", "0"), {}, "--retention-days"),
    (("--port", "70000"), {}, "--port"),
    (("--token-file", "/nonexistent/token"), {}, "--token-file"),
])
def test_bad_config_exits_2_naming_the_flag(flags, env, named):
    result = run_sensornet("dashboard", *flags, env=None, timeout=30)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert result.stderr.startswith("sensornet dashboard: ")


def test_retention_prunes_old_readings_and_history_averages_into_buckets(tmp_path):
    store = Store(tmp_path / "h.sqlite3", retention_days=1)
    now = time.time()
    for i in range(100):
        store.add_reading("huzzah-01", "tsl2561", {"lux": float(i)}, now - 3 * 86400 + i)
    for i in range(100):
        store.add_reading("huzzah-01", "tsl2561", {"lux": float(i), "ir": 1.0}, now - 100 + i, ts=1_800_000_000 + i)
    assert store.prune(now) == 100
    assert [r[5] for r in store.rows(now - 5 * 86400, now) if r[4] == "lux"] == [float(i) for i in range(100)]
    history = store.history(now - 100.5, now, max_points=10)
    assert set(history) == {"lux", "ir"}
    points = history["lux"]["huzzah-01"]
    assert len(points) == 10
    assert [v for _, v in points] == [4.5 + 10 * i for i in range(10)]
    assert store.devices()[0]["sensors"] == {"tsl2561": ["ir", "lux"]}
    store.close()
    assert json.loads(json.dumps(Store(tmp_path / "h.sqlite3").devices()))[0]["client_id"] == "huzzah-01"  # on disk


@pytest.mark.e2e
def test_make_demo_prints_the_dashboard_url_and_the_page_shows_three_boards_moving(tmp_path, page):
    demo = Sensornet("demo", "--duration", "25", "--interval", "1", "--state-dir", str(tmp_path / "demo"))
    try:
        line = demo.wait_line("sensornet demo: dashboard http://", "stdout", 60)
        url = line.split()[-1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), line
        page.goto(url)
        ids = [f"huzzah-0{i}ffc000" for i in (1, 2, 3)]
        for cid in ids:
            card(page, cid).locator(".status.online").wait_for(timeout=30000)
            card(page, cid).locator('.readings dd[data-quantity="lux"]').wait_for(timeout=20000)
        first = {cid: reading_text(page, cid, "lux") for cid in ids}
        for cid in ids:  # the demo lets each board's light drift: the readings move
            wait_until(lambda cid=cid: reading_text(page, cid, "lux") != first[cid], 20, f"{cid}'s lux changing")
        page.locator('.chart[data-quantity="lux"]').wait_for(timeout=5000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-demo.png"), full_page=True)
        assert demo.wait(60) == 0, "\n".join(demo.stderr[-20:])
    finally:
        demo.stop()
