"""Home Assistant MQTT discovery for the devices' readings, published on the Pi side.

For each numeric quantity a device publishes on sensors/<client_id>/<sensor> (e.g. "lux" of
tsl2561, "temperature_c" of bme280, "rssi_dbm" of system), once the device's MAC is known
(connect/<client_id>), a retained config on

    homeassistant/sensor/<client_id>_<quantity>/config

describing an MQTT sensor entity: state_topic sensors/<client_id>/<sensor> with value_template
`{{ value_json.<quantity> }}`, unit_of_measurement, device_class and state_class where the
quantity has them, availability on status/<client_id> (online / offline), and the device
(identifiers [client_id], connections [["mac", MAC]], model "Feather Huzzah ESP8266").
Clearing a config is an empty retained message on the same topic.

Source: Home Assistant's "MQTT" integration documentation (sections "MQTT Discovery": the
discovery topic `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, object ids of
[a-zA-Z0-9_-], an empty retained payload removes the entity, the birth message "online" on
homeassistant/status; the "device" map) and "MQTT Sensor" (its configuration variables), and
the sensor entity's device classes with their units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from feather_huzzah import topics

from . import __version__

PREFIX = "homeassistant"  # Home Assistant's default discovery prefix
BIRTH_TOPIC = PREFIX + "/status"  # Home Assistant publishes "online" here when it (re)starts
MODEL = "Feather Huzzah ESP8266"
MANUFACTURER = "Adafruit"


@dataclass(frozen=True)
class Quantity:
    """How Home Assistant should show one quantity: a name, its unit (None: unitless), device
    class and state class (None: not set), and entity_category "diagnostic" for the device's
    own health figures."""

    name: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    diagnostic: bool = False


# Known quantities (the payloads of the topic contract); any other numeric key gets
# Quantity(<key>) with no unit nor device class.
QUANTITIES: dict[str, Quantity] = {
    # tsl2561
    "lux": Quantity("Illuminance", "lx", "illuminance"),
    "broadband": Quantity("Broadband channel", None, None, diagnostic=True),
    "ir": Quantity("IR channel", None, None, diagnostic=True),
    "gain": Quantity("Gain", None, None, None, diagnostic=True),
    "integration_ms": Quantity("Integration time", "ms", "duration", None, diagnostic=True),
    # bme280
    "temperature_c": Quantity("Temperature", "°C", "temperature"),
    "humidity_pct": Quantity("Humidity", "%", "humidity"),
    "pressure_hpa": Quantity("Pressure", "hPa", "atmospheric_pressure"),
    # system (health)
    "uptime_s": Quantity("Uptime", "s", "duration", "total_increasing", diagnostic=True),
    "heap_free": Quantity("Free heap", "B", "data_size", diagnostic=True),
    "rssi_dbm": Quantity("Wi-Fi signal", "dBm", "signal_strength", diagnostic=True),
    "dropped": Quantity("Dropped readings", None, None, "total_increasing", diagnostic=True),
    "wifi_reconnects": Quantity("Wi-Fi reconnects", None, None, "total_increasing", diagnostic=True),
    "mqtt_reconnects": Quantity("MQTT reconnects", None, None, "total_increasing", diagnostic=True),
    "fault": Quantity("LED fault code", None, None, None, diagnostic=True),
}

_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")


def object_id(client_id: str, quantity: str) -> str:
    """`<client_id>_<quantity>` with any character outside [a-zA-Z0-9_-] made "_"."""
    return _NOT_ID.sub("_", f"{client_id}_{quantity}")


def config_topic(client_id: str, quantity: str, prefix: str = PREFIX) -> str:
    """homeassistant/sensor/<client_id>_<quantity>/config (str)."""
    return f"{prefix}/sensor/{object_id(client_id, quantity)}/config"


def describe(quantity: str) -> Quantity:
    """The Quantity for a payload key (a known one, else a unitless measurement)."""
    return QUANTITIES.get(quantity) or Quantity(quantity.replace("_", " ").capitalize())


def sensor_config(client_id: str, sensor: str, quantity: str, mac: str,
                  sw_version: str | None = None) -> dict[str, Any]:
    """The discovery config (dict, to be sent as JSON) of `quantity` (a key of the payloads on
    sensors/<client_id>/<sensor>) of the device with Wi-Fi MAC `mac` ("aa:bb:cc:dd:ee:ff").
    sw_version: the firmware's version when the device has said it (system "version")."""
    q = describe(quantity)
    device: dict[str, Any] = {
        "identifiers": [client_id],
        "connections": [["mac", mac]],
        "name": client_id,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
    }
    if sw_version:
        device["sw_version"] = sw_version
    config: dict[str, Any] = {
        "name": q.name,
        "unique_id": object_id(client_id, quantity),
        "state_topic": topics.sensor(client_id, sensor),
        "value_template": "{{ value_json." + quantity + " }}",
        "availability_topic": topics.status(client_id),
        "payload_available": topics.ONLINE,
        "payload_not_available": topics.OFFLINE,
        "device": device,
        "origin": {"name": "sensornet", "sw_version": __version__},
    }
    if q.unit:
        config["unit_of_measurement"] = q.unit
    if q.device_class:
        config["device_class"] = q.device_class
    if q.state_class:
        config["state_class"] = q.state_class
    if q.diagnostic:
        config["entity_category"] = "diagnostic"
    return config


def configs(client_id: str, mac: str, sensors: dict[str, list[str]], sw_version: str | None = None,
            prefix: str = PREFIX) -> dict[str, dict[str, Any]]:
    """Every config of a device: {topic: config} for each quantity of each sensor in `sensors`
    ({sensor: [quantity, ...]}, what the device has published)."""
    return {config_topic(client_id, quantity, prefix): sensor_config(client_id, sensor, quantity, mac, sw_version)
            for sensor, names in sorted(sensors.items()) for quantity in names}
