# The application: asyncio tasks that keep Wi-Fi and the broker connection up, take sensor
# readings and publish them on the topics of topics.py (the topic contract):
#   sensors/<client_id>/tsl2561  JSON {"lux", "broadband", "ir", "gain", "integration_ms", "seq", "ts"?}
#   sensors/<client_id>/bme280   JSON {"temperature_c", "humidity_pct", "pressure_hpa", "seq", "ts"?}
#   sensors/<client_id>/i2c      JSON {"addresses": [57, ...]}, the I2C bus scan, on every connect
#   sensors/<client_id>/system   JSON health (health.py), on connect, every health_every readings
#                                and after each accepted command on cmd/<client_id>/<name>
#   status/<client_id>/error     JSON {"cmd", "error"}: the reply to a refused command (commands.py)
# A changed config.json is applied without a reset: _run() restarts the tasks with it.
import gc
import json
import os
import sys
import time

from machine import I2C, WDT, Pin, reset, unique_id
from micropython import const

try:
    import asyncio
except ImportError:  # MicroPython 1.19/1.20
    import uasyncio as asyncio

try:  # early, while the heap is least used: compiling mqtt.py (when not a .mpy) needs room
    from mqtt import Client
except Exception as e:  # ImportError: no umqtt.simple (the 1 MB firmware build); MemoryError
    Client = None
    print(f"app: import umqtt.simple: {e!r}")

import statusled
import topics
import wifi

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(30000)
_CONFIG_CHECK_MS = const(5000)  # config.json: looked at (os.stat) this often, re-read when changed
_WIFI_RESTART_MS = const(15000)
_STABLE_MS = const(60000)  # safemode.py: a boot that lasts this long is no boot loop
_WDT_FEED_MS = const(500)  # the ESP8266's watchdog resets the chip after about 3.2 s unfed
_CONFIG = "config.json"  # settings.PATH (settings.py is loaded only while it reads the file)
_NTP_EVERY_MS = const(3600000)  # the clock is set again this often
_NTP_RETRY_MS = const(60000)  # after a failed attempt
_CLOCK_SET = const(1704067200)  # 2024-01-01 (Unix seconds): a clock before it has not been set
_UNIX_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0  # the esp8266 port counts from 2000
_RESCAN = const(30)  # sensor cycles between two I2C bus scans while every sensor found works
_node = None  # the Node, once config.json has been read
uptime_ms = 0  # since this boot, summed by watchdog_task (ticks_ms() wraps after 2^30 ms)


def _load(name):
    # A module needed only now and then (settings, safemode): imported for the call, then dropped
    # from sys.modules, so its code does not hold heap in between.
    __import__(name)
    return sys.modules.pop(name)


def unix_time():
    """Unix seconds (int, UTC) when the clock has been set (NTP), else None."""
    t = time.time() + _UNIX_OFFSET
    return t if t >= _CLOCK_SET else None


def _read_config():
    """config.json, checked: (dict, None), or (None, the message naming the key and the fix)."""
    settings = _load("settings")
    try:
        return settings.load(_CONFIG), None
    except settings.ConfigError as e:
        return None, str(e)


class Node:
    """What the tasks share: configuration, client id, the I2C bus and the outbox.

    The outbox holds (topic, payload) readings (str, str) until the broker has acknowledged
    them (QoS 1 PUBACK), oldest first; at most queue_size, the oldest dropped beyond that.
    It and seq outlive a change of configuration (configure()).
    """

    def __init__(self, cfg):
        self.cfg = None
        self.i2c = I2C(scl=Pin(5), sda=Pin(4), freq=100000)
        self.outbox = []
        self.dropped = 0
        self.seq = 0
        self.broker_seen = time.ticks_ms()  # when the broker last answered (or the node began)
        self.cycles = 0  # sensor cycles (every publish_interval_s)
        self.interval_s = None  # set by the command `interval`: overrides publish_interval_s until reset
        self.ntp_due = None  # ticks_ms when the clock is to be set (again); None: at once
        self.wifi_up = False
        self.wifi_ups = 0  # times the STA interface came up (reconnects: all but the first)
        self.mqtt_ups = 0  # successful MQTT connects
        self.configure(cfg)

    def configure(self, cfg):
        """Take a (new) configuration; the tasks must be restarted to use it."""
        old = self.cfg
        cid = cfg["client_id"] or topics.client_id(unique_id())
        if old:
            if cid != self.client_id:
                self.outbox = []  # their topics name the old client id, which the account may not write
            if (old["wifi_ssid"], old["wifi_password"]) != (cfg["wifi_ssid"], cfg["wifi_password"]):
                wifi.sta().disconnect()  # wifi_task associates again, with the new access point
        del self.outbox[:-cfg["queue_size"]]
        self.cfg = cfg
        self.client_id = cid

    def queue(self, topic, payload):
        if len(self.outbox) >= self.cfg["queue_size"]:
            self.outbox.pop(0)
            self.dropped += 1
            print(f"app: outbox full, dropped the oldest reading ({self.dropped} so far)")
        self.outbox.append((topic, payload))


async def wifi_task(node):
    """Watch the STA interface; code 1 while it is down; restart the association now and then.
    While it is up, set the clock from ntp_host (ntptime) at once, then hourly (after a failure: in a minute)."""
    sta = wifi.sta()
    restarted = None
    while True:
        if sta.isconnected():
            if not node.wifi_up:
                node.wifi_up = True
                node.wifi_ups += 1
            statusled.clear(statusled.WIFI)
            restarted = None
            host = node.cfg["ntp_host"]
            if host and (node.ntp_due is None or time.ticks_diff(time.ticks_ms(), node.ntp_due) >= 0):
                ok = _load("clock").sync(host)
                node.ntp_due = time.ticks_add(time.ticks_ms(), _NTP_EVERY_MS if ok else _NTP_RETRY_MS)
        else:
            node.wifi_up = False
            statusled.set(statusled.WIFI)
            if restarted is None or time.ticks_diff(time.ticks_ms(), restarted) > _WIFI_RESTART_MS:
                print(f"wifi: not connected (status {sta.status()}), connecting")
                wifi.start(node.cfg["wifi_ssid"], node.cfg["wifi_password"])
                restarted = time.ticks_ms()
        await asyncio.sleep_ms(500)


def _drivers(cfg):
    # The driver registry: (I2C address, driver module = sensor name). One driver per file, each
    # with make(i2c, address, cfg, keep) -> a sensor: setup(); wait_ms(); update() -> dict or None
    # (measure again); `keep` (a list) holds what the driver keeps between readings as plain data.
    # A driver's module is imported for each reading and dropped after it (load-and-drop): only
    # one driver's code is in the heap at a time, and none between readings.
    return ((cfg["tsl2561_address"], topics.TSL2561), (0x76, topics.BME280), (0x77, topics.BME280))


async def _measure(sensor):
    # one reading (dict) of a sensor; None when automatic gain never settled
    sensor.setup()
    for _ in range(4):  # the TSL2561's automatic gain: up to 3 steps of its ladder, then the reading
        await asyncio.sleep_ms(sensor.wait_ms())
        reading = sensor.update()
        if reading:
            return reading
    return None


async def sensor_task(node):
    """Every publish_interval_s, read each sensor the I2C bus scan found (the registry, _drivers)
    and queue its reading. Code 5 while one of them fails or none is found; the others go on. A
    failed sensor is tried again each cycle (when it is back, it reads again); the bus is scanned
    each cycle while one fails or none is found, else every _RESCAN cycles."""
    cfg = node.cfg
    cid = node.client_id
    sensors = {}  # name -> [address, keep (the driver's list), working (bool)]
    while True:
        t0 = time.ticks_ms()
        if not sensors or node.cycles % _RESCAN == 0 or not all(s[2] for s in sensors.values()):
            try:
                found = node.i2c.scan()
            except OSError:
                found = ()
            for address, name in _drivers(cfg):
                if address in found and name not in sensors:
                    sensors[name] = [address, [], True]
                    print(f"app: {name} found at 0x{address:02x}")
        failed = not sensors
        for name, s in sensors.items():
            try:
                reading = await _measure(_load(name).make(node.i2c, s[0], cfg, s[1]))
                ts = unix_time()  # the capture time, kept however late it is published
                if reading and ts:
                    reading["ts"] = ts
                if reading:
                    node.seq += 1
                    reading["seq"] = node.seq
                    node.queue(topics.sensor(cid, name), json.dumps(reading))
                s[2] = True
            except Exception as e:  # OSError from the bus; anything else must not end the task
                sys.modules.pop(name, None)
                if s[2]:
                    print(f"{name}: {e!r}")
                s[2] = False
                failed = True
            reading = None
        if failed:
            statusled.set(statusled.SENSOR)
        else:
            statusled.clear(statusled.SENSOR)
        node.cycles += 1
        if cfg["health_every"] and node.cycles % cfg["health_every"] == 0:
            node.queue(topics.system(cid), health(node))
        interval_ms = int((node.interval_s or cfg["publish_interval_s"]) * 1000)
        await asyncio.sleep_ms(max(0, interval_ms - time.ticks_diff(time.ticks_ms(), t0)))


def health(node):
    """The health payload (JSON str, health.py: loaded for the call)."""
    return _load("health").payload(node, uptime_ms, unix_time())


async def _announce(node, client):
    """After every (re)connect: the MAC, online, and the I2C bus scan. Raises OSError."""
    cid = node.client_id
    await client.publish(topics.connect(cid), wifi.mac(), True, topics.QOS)
    await client.publish(topics.status(cid), topics.ONLINE, True, topics.QOS)
    try:
        addresses = node.i2c.scan()
    except OSError:
        addresses = []
    await client.publish(topics.sensor(cid, topics.I2C), json.dumps({"addresses": addresses}), False, topics.QOS)
    if await client.subscribe(topics.cmd(cid, "#")):
        print("app: subscription to cmd/ refused (broker ACL)")
    await client.publish(topics.system(cid), health(node), False, topics.QOS)


async def _serve(node, client):
    """Publish the outbox while connected; keep the session alive (client.keep(): pings at half
    the keepalive, OSError when one goes unanswered). Raises OSError on failure."""
    sta = wifi.sta()
    while sta.isconnected():
        while node.outbox:
            reading = node.outbox[0]
            await client.publish(reading[0], reading[1], False, topics.QOS)  # returns after the PUBACK
            if node.outbox and node.outbox[0] is reading:  # (sensor_task may have dropped it meanwhile)
                node.outbox.pop(0)  # at-least-once: removed only once acknowledged
            statusled.clear(statusled.PUBLISH)
            node.broker_seen = time.ticks_ms()
            gc.collect()
            print(f"app: published {reading[0]}, heap free {gc.mem_free()}")
        await client.keep()
        while client.inbox:
            topic, msg = client.inbox.pop(0)
            await _load("commands").handle(node, client, topic, msg, health)
        if client.pinged is None:  # no ping waiting for its answer: the link is alive
            node.broker_seen = time.ticks_ms()
        await asyncio.sleep_ms(100)
    raise OSError("wifi down")


async def mqtt_task(node):
    """Connect, announce, publish; on any failure close, back off and reconnect. Codes 2, 3, 4."""
    if not Client:
        statusled.set(statusled.IMPORT)  # until the firmware is flashed again
        return
    cfg = node.cfg
    client = Client(node.client_id, cfg["mqtt_host"], cfg["mqtt_port"], cfg["mqtt_user"],
                    cfg["mqtt_password"], cfg["mqtt_keepalive_s"], cfg["mqtt_timeout_s"])
    client.set_last_will(topics.status(node.client_id), topics.OFFLINE, retain=True, qos=topics.QOS)
    sta = wifi.sta()
    backoff = _BACKOFF_MIN_MS
    try:
        while True:
            if not sta.isconnected():
                await asyncio.sleep_ms(500)
                continue
            try:
                await client.connect()  # refused: OSError, no answer: OSError(ETIMEDOUT), bad account: MQTTException
                node.mqtt_ups += 1
                statusled.clear(statusled.BROKER)  # before the health in _announce, which shows the LED code
                statusled.clear(statusled.PUBLISH)
                await _announce(node, client)
            except Exception as e:
                client.close()
                statusled.set(statusled.BROKER)
                print(f"app: broker {cfg['mqtt_host']}:{cfg['mqtt_port']}: {e!r}, retry in {backoff} ms")
                await asyncio.sleep_ms(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_MS)
                continue
            node.broker_seen = time.ticks_ms()
            backoff = _BACKOFF_MIN_MS
            print(f"app: connected to {cfg['mqtt_host']}:{cfg['mqtt_port']} as {node.client_id}")
            try:
                await _serve(node, client)
            except Exception as e:
                statusled.set(statusled.PUBLISH)
                print(f"app: publish failed: {e!r}")
            client.close()
    finally:  # cancelled by a change of config.json
        client.close(True)


async def watchdog_task():
    """Feed the ESP8266's watchdog while the event loop runs: a loop stuck for about 3.2 s resets
    the chip (reset_cause() WDT_RESET). Once this boot has lasted _STABLE_MS, clear safe mode's
    boot-loop counter. After mqtt_lost_reset_s without an answer from the broker, reset: the last
    resort after the MQTT task's own reconnects (a DNS change, a wedged network stack)."""
    global uptime_ms
    wdt = WDT()
    began = last = time.ticks_ms()
    stable = False
    while True:
        wdt.feed()
        now = time.ticks_ms()
        uptime_ms += time.ticks_diff(now, last)
        last = now
        if not stable and time.ticks_diff(now, began) >= _STABLE_MS:
            _load("safemode").stable()
            stable = True
        node = _node
        if node and node.cfg["mqtt_lost_reset_s"]:
            lost = time.ticks_diff(now, node.broker_seen)
            if lost > node.cfg["mqtt_lost_reset_s"] * 1000:
                print(f"app: no broker for {lost // 1000} s: machine.reset()")
                reset()
        await asyncio.sleep_ms(_WDT_FEED_MS)


async def _run():
    """Start the tasks with config.json; restart them with it whenever it changes (and is valid)."""
    global _node
    asyncio.create_task(statusled.run())
    asyncio.create_task(watchdog_task())
    node = None
    tasks = ()
    applied = None  # the stamp of the config.json last read without error
    while True:
        try:
            stamp = os.stat(_CONFIG)
            stamp = stamp[6], stamp[8]  # size, mtime
        except OSError:
            stamp = None
        if stamp is None or stamp != applied:
            cfg, error = _read_config()
            if cfg:
                statusled.clear(statusled.CONFIG)
                applied = stamp
            else:  # shown until fixed; the running tasks go on
                statusled.set(statusled.CONFIG)
                print(f"app: {error}" + (" (still running the previous config)" if node else ""))
            if cfg and (node is None or cfg != node.cfg):
                for t in tasks:
                    t.cancel()
                if node:
                    print("app: config.json changed: restarting the tasks with it")
                    node.configure(cfg)
                else:
                    node = _node = Node(cfg)
                print(f"app: client id {node.client_id}")
                tasks = (asyncio.create_task(wifi_task(node)), asyncio.create_task(sensor_task(node)),
                         asyncio.create_task(mqtt_task(node)))
                gc.collect()
        await asyncio.sleep_ms(_CONFIG_CHECK_MS)


def main():
    """Run the application forever (asyncio)."""
    gc.collect()
    asyncio.run(_run())
