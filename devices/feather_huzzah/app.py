# The application: asyncio tasks that keep Wi-Fi and the broker connection up, take sensor
# readings and publish them on the topics of topics.py (the topic contract):
#   sensors/<client_id>/tsl2561  JSON {"lux", "broadband", "ir", "gain", "integration_ms", "seq"}
#   sensors/<client_id>/i2c      JSON {"addresses": [57, ...]}, the I2C bus scan, on every connect
import gc
import json
import time

from machine import I2C, Pin, unique_id
from micropython import const

try:
    import asyncio
except ImportError:  # MicroPython 1.19/1.20
    import uasyncio as asyncio

import settings
import statusled
import topics
import tsl2561
import wifi

_SOCKET_TIMEOUT_S = const(5)  # a dead link raises instead of hanging a publish
_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(30000)
_CONFIG_RETRY_MS = const(5000)
_IMPORT_RETRY_MS = const(30000)
_WIFI_RESTART_MS = const(15000)


class Node:
    """What the tasks share: configuration, client id, the I2C bus and the outbox.

    The outbox holds (topic, payload) readings (str, str) until the broker has acknowledged
    them (QoS 1 PUBACK), oldest first; at most queue_size, the oldest dropped beyond that.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.client_id = cfg["client_id"] or topics.client_id(unique_id())
        self.i2c = I2C(scl=Pin(5), sda=Pin(4), freq=100000)
        self.outbox = []
        self.dropped = 0
        self.seq = 0

    def queue(self, topic, payload):
        if len(self.outbox) >= self.cfg["queue_size"]:
            self.outbox.pop(0)
            self.dropped += 1
            print(f"app: outbox full, dropped the oldest reading ({self.dropped} so far)")
        self.outbox.append((topic, payload))


async def wifi_task(node):
    """Watch the STA interface; code 1 while it is down; restart the association now and then."""
    sta = wifi.sta()
    restarted = None
    while True:
        if sta.isconnected():
            statusled.clear(statusled.WIFI)
            restarted = None
        else:
            statusled.set(statusled.WIFI)
            if restarted is None or time.ticks_diff(time.ticks_ms(), restarted) > _WIFI_RESTART_MS:
                print(f"wifi: not connected (status {sta.status()}), connecting")
                wifi.start(node.cfg["wifi_ssid"], node.cfg["wifi_password"])
                restarted = time.ticks_ms()
        await asyncio.sleep_ms(500)


async def sensor_task(node):
    """Every publish_interval_s, read the TSL2561 and queue the reading. Code 5 while it fails."""
    cfg = node.cfg
    sensor = tsl2561.TSL2561(node.i2c, cfg["tsl2561_address"], cfg["tsl2561_gain"],
                             cfg["tsl2561_integration_ms"], cfg["tsl2561_package"])
    topic = topics.sensor(node.client_id, topics.TSL2561)
    interval_ms = int(cfg["publish_interval_s"] * 1000)
    ready = False
    while True:
        t0 = time.ticks_ms()
        try:
            if not ready:
                sensor.setup()
                ready = True
            reading = None
            for _ in range(3):  # automatic gain may ask for another integration
                await asyncio.sleep_ms(sensor.wait_ms())
                reading = sensor.update()
                if reading:
                    break
            if reading:
                node.seq += 1
                reading["seq"] = node.seq
                node.queue(topic, json.dumps(reading))
            statusled.clear(statusled.SENSOR)
        except Exception as e:  # OSError from the bus; anything else must not end the task
            ready = False
            statusled.set(statusled.SENSOR)
            print(f"tsl2561: {e!r}")
        await asyncio.sleep_ms(max(0, interval_ms - time.ticks_diff(time.ticks_ms(), t0)))


def _announce(node, client):
    """After every (re)connect: the MAC, online, and the I2C bus scan. Raises OSError."""
    cid = node.client_id
    client.publish(topics.connect(cid), wifi.mac(), retain=True, qos=topics.QOS)
    client.publish(topics.status(cid), topics.ONLINE, retain=True, qos=topics.QOS)
    try:
        addresses = node.i2c.scan()
    except OSError:
        addresses = []
    client.publish(topics.sensor(cid, topics.I2C), json.dumps({"addresses": addresses}), qos=topics.QOS)


async def _serve(node, client):
    """Publish the outbox while connected; keep the session alive. Raises OSError on failure."""
    keepalive_ms = int(node.cfg["mqtt_keepalive_s"] * 500)  # ping at half the keepalive
    sta = wifi.sta()
    last_tx = time.ticks_ms()
    while sta.isconnected():
        while node.outbox:
            topic, payload = node.outbox[0]
            client.sock.settimeout(_SOCKET_TIMEOUT_S)  # umqtt's wait_msg() clears it
            client.publish(topic, payload, qos=topics.QOS)  # returns after the PUBACK
            node.outbox.pop(0)  # at-least-once: removed only once acknowledged
            statusled.clear(statusled.PUBLISH)
            last_tx = time.ticks_ms()
            gc.collect()
            print(f"app: published {topic}, heap free {gc.mem_free()}")
            await asyncio.sleep_ms(0)
        if time.ticks_diff(time.ticks_ms(), last_tx) > keepalive_ms:
            client.ping()
            last_tx = time.ticks_ms()
        client.check_msg()  # reads PINGRESPs; raises OSError when the broker closed the link
        await asyncio.sleep_ms(100)
    raise OSError("wifi down")


def _close(client):
    try:
        client.sock.close()
    except Exception:
        pass


async def mqtt_task(node):
    """Connect, announce, publish; on any failure close, back off and reconnect. Codes 2, 3, 4."""
    while True:
        try:
            from umqtt.simple import MQTTClient
            break
        except ImportError as e:
            statusled.set(statusled.IMPORT)
            print(f"app: import umqtt.simple: {e!r}")
            await asyncio.sleep_ms(_IMPORT_RETRY_MS)
    statusled.clear(statusled.IMPORT)
    cfg = node.cfg
    client = MQTTClient(node.client_id, cfg["mqtt_host"], cfg["mqtt_port"], cfg["mqtt_user"],
                        cfg["mqtt_password"], keepalive=int(cfg["mqtt_keepalive_s"]))
    client.set_last_will(topics.status(node.client_id), topics.OFFLINE, retain=True, qos=topics.QOS)
    sta = wifi.sta()
    backoff = _BACKOFF_MIN_MS
    while True:
        if not sta.isconnected():
            await asyncio.sleep_ms(500)
            continue
        try:
            client.connect()  # blocking; refused: OSError, bad credentials: MQTTException
            client.sock.settimeout(_SOCKET_TIMEOUT_S)
            _announce(node, client)
        except Exception as e:
            _close(client)
            statusled.set(statusled.BROKER)
            print(f"app: broker {cfg['mqtt_host']}:{cfg['mqtt_port']}: {e!r}, retry in {backoff} ms")
            await asyncio.sleep_ms(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_MS)
            continue
        statusled.clear(statusled.BROKER)
        statusled.clear(statusled.PUBLISH)
        backoff = _BACKOFF_MIN_MS
        print(f"app: connected to {cfg['mqtt_host']}:{cfg['mqtt_port']} as {node.client_id}")
        try:
            await _serve(node, client)
        except Exception as e:
            statusled.set(statusled.PUBLISH)
            print(f"app: publish failed: {e!r}")
        _close(client)


async def _load_config():
    while True:
        try:
            cfg = settings.load()
            statusled.clear(statusled.CONFIG)
            return cfg
        except settings.ConfigError as e:
            statusled.set(statusled.CONFIG)
            print(f"app: {e}")
            await asyncio.sleep_ms(_CONFIG_RETRY_MS)


async def _run():
    asyncio.create_task(statusled.run())
    node = Node(await _load_config())
    print(f"app: client id {node.client_id}")
    asyncio.create_task(wifi_task(node))
    asyncio.create_task(sensor_task(node))
    await mqtt_task(node)


def main():
    """Run the application forever (asyncio)."""
    gc.collect()
    asyncio.run(_run())
