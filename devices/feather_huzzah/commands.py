# Remote commands on cmd/<client_id>/<name> (README, topic table). app.py loads this module only
# for the call and drops it after (identify's blinking keeps it for its 10 s). handle() replies:
# health on sensors/<client_id>/system when the command is accepted, {"cmd", "error"} on
# status/<client_id>/error when refused; never an exception for a payload.
import json

import topics
from machine import Pin, reset

try:
    import asyncio
except ImportError:  # MicroPython 1.19/1.20
    import uasyncio as asyncio

INTERVAL_MIN_S = 1  # settings.py's range of publish_interval_s
INTERVAL_MAX_S = 86400
IDENTIFY_MS = 10000  # identify: the blue LED blinks this long


def run(node, name, payload):
    """Apply command `name` (str) with `payload` (bytes). Returns None when accepted, else what
    was wrong (str). interval: seconds (a number, INTERVAL_MIN_S-INTERVAL_MAX_S) between
    readings, until the next reset; identify: blink the blue LED (GPIO2) 10 s; reboot (app.py
    resets after its reply); status: nothing here (the reply is health). The last three take no
    value."""
    try:
        text = payload.decode().strip()
    except UnicodeError:
        return "payload is not UTF-8 text"
    if name == topics.CMD_INTERVAL:
        try:
            v = float(text)
        except ValueError:
            v = None
        if v is None or not INTERVAL_MIN_S <= v <= INTERVAL_MAX_S:
            return f"interval: send a number of seconds from {INTERVAL_MIN_S} to {INTERVAL_MAX_S}, not {text[:24]!r}"
        node.interval_s = v
        return None
    if name not in (topics.CMD_IDENTIFY, topics.CMD_REBOOT, topics.CMD_STATUS):
        return f"unknown command {name[:24]!r}: use interval, identify, reboot or status"
    if text:
        return f"{name} takes no value, not {text[:24]!r}"
    if name == topics.CMD_IDENTIFY:
        asyncio.create_task(identify(IDENTIFY_MS))
    return None


async def identify(ms, pin=2):
    """Task: blink the blue LED (GPIO2, active low) 4 times a second for `ms` milliseconds, then
    leave it dark."""
    led = Pin(pin, Pin.OUT, value=1)
    for _ in range(ms // 125):
        led(not led())
        await asyncio.sleep_ms(125)
    led(1)


async def handle(node, client, topic, msg, health):
    """One command: `topic` cmd/<client_id>/<name> and `msg` (bytes) as received; `client` the
    connected mqtt.Client; health() the health payload (str). Publishes the reply (raises OSError
    when that fails); reboot resets the board after it."""
    cid = node.client_id
    name = topic[len(topics.cmd(cid, "")):].decode()
    error = run(node, name, msg)
    if error:
        print(f"app: command {name}: {error}")
        await client.publish(topics.error(cid), json.dumps({"cmd": name, "error": error}), False, topics.QOS)
        return
    print(f"app: command {name} done")
    await client.publish(topics.system(cid), health(node), False, topics.QOS)
    if name == topics.CMD_REBOOT:
        client.close(True)
        await asyncio.sleep_ms(200)
        reset()
