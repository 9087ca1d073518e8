"""Home Assistant MQTT discovery published by `sensornet dashboard`, checked field by field against
Home Assistant's documentation, as Home Assistant's own account receives it from the repo's
Mosquitto (a real subscriber), and removed again when the device is.

What the documentation says, as used below (home-assistant.io: "MQTT" integration, sections
"MQTT Discovery" and "Using abbreviations and base topic"; "MQTT Sensor", its configuration
variables; "Sensor" entity, its device classes and their units; "state_class"):
  - discovery topic: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, the default
    prefix "homeassistant", object_id of [a-zA-Z0-9_-]; the config is JSON, retained so it
    survives Home Assistant's restarts; an empty (retained) payload removes the entity.
  - MQTT Sensor: state_topic (required), value_template, unit_of_measurement, device_class,
    state_class (measurement, measurement_angle, total, total_increasing), unique_id, name,
    availability_topic with payload_available (default "online") / payload_not_available
    ("offline"), entity_category (only "diagnostic" for a sensor), device, origin, ...
  - device: identifiers (list or string), connections (list of [type, value] pairs, e.g.
    ["mac", "02:5b:26:a8:dc:12"]), manufacturer, model, name, sw_version, ...: needs
    identifiers or connections (and a unique_id on the entity).
  - origin: name (required), sw_version, support_url.
"""

from __future__ import annotations

import json
import re

import pytest

from sensornet import __version__
from tests.dashboard_helpers import HOMEASSISTANT_PASSWORD, Dashboard, Publisher
from tests.helpers import DEVICE_PASSWORD, Subscriber, wait_until

CID = "huzzah-0000beef"
MAC = "5c:cf:7f:ef:be:00"
TOPIC = re.compile(r"homeassistant/sensor/(?P<object_id>[a-zA-Z0-9_-]+)/config")
SENSOR_KEYS = {  # the MQTT Sensor's configuration variables (those a discovery config may hold)
    "availability", "availability_mode", "availability_template", "availability_topic", "device",
    "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture", "expire_after",
    "force_update", "icon", "json_attributes_template", "json_attributes_topic", "last_reset_value_template",
    "name", "object_id", "default_entity_id", "options", "origin", "payload_available", "payload_not_available",
    "platform", "qos", "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template",
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
               "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
UNITS = {  # sensor device class -> the units the documentation allows for it (those used here)
    "illuminance": {"lx"},
    "temperature": {"°C", "°F", "K"},
    "humidity": {"%"},
    "atmospheric_pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "signal_strength": {"dB", "dBm"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
}
READINGS = {
    "tsl2561": {"lux": 123.4, "broadband": 2000, "ir": 500, "gain": 16, "integration_ms": 402, "seq": 1},
    "bme280": {"temperature_c": 21.5, "humidity_pct": 40.0, "pressure_hpa": 1013.2, "seq": 1},
    "system": {"uptime_s": 60, "heap_free": 17312, "rssi_dbm": -61, "reset_cause": "power_on", "version": "0.2.0",
               "dropped": 0, "wifi_reconnects": 0, "mqtt_reconnects": 0, "fault": 0},
}
EXPECTED = {  # quantity -> (unit, device_class, state_class) as a person would read the reading
    "lux": ("lx", "illuminance", "measurement"),
    "temperature_c": ("°C", "temperature", "measurement"),
    "humidity_pct": ("%", "humidity", "measurement"),
    "pressure_hpa": ("hPa", "atmospheric_pressure", "measurement"),
    "rssi_dbm": ("dBm", "signal_strength", "measurement"),
    "heap_free": ("B", "data_size", "measurement"),
    "uptime_s": ("s", "duration", "total_increasing"),
}


def quantities():
    return {q: sensor for sensor, payload in READINGS.items() for q, v in payload.items()
            if isinstance(v, int | float) and q != "seq"}


def configs_of(messages):
    """{topic: (payload bytes, retain)} of the latest message on each config topic of CID."""
    return {t: (p, r) for t, p, r, _ in messages if TOPIC.fullmatch(t) and t.split("/")[2].startswith(CID)}


@pytest.fixture
def home_assistant(broker):
    broker.add_account("homeassistant", HOMEASSISTANT_PASSWORD)
    subscribers = []

    def subscribe():
        s = Subscriber(broker.port, ("homeassistant/#",), username="homeassistant", password=HOMEASSISTANT_PASSWORD)
        subscribers.append(s)
        return s
    yield subscribe
    for s in subscribers:
        s.close()


def test_retained_configs_match_the_documentation_field_by_field_and_go_with_the_device(broker, tmp_path,
                                                                                         home_assistant):
    dashboard = Dashboard(broker, tmp_path / "h.sqlite3")
    broker.add_account(CID, DEVICE_PASSWORD)
    device = Publisher(broker.port, CID)
    expected_topics = {f"homeassistant/sensor/{CID}_{q}/config" for q in quantities()}
    try:
        device.publish(f"connect/{CID}", MAC, retain=True)
        device.publish(f"status/{CID}", "online", retain=True)
        for sensor, payload in READINGS.items():
            device.publish(f"sensors/{CID}/{sensor}", payload)
        device.publish(f"sensors/{CID}/i2c", {"addresses": [57]})  # no numeric quantity: no entity
        live = home_assistant()
        wait_until(lambda: set(configs_of(live.messages)) >= expected_topics, 15, "every quantity's config")
        live.close()

        ha = home_assistant()  # what Home Assistant gets when it starts: the retained configs
        configs = wait_until(lambda: len(configs_of(ha.messages)) >= len(expected_topics) and configs_of(ha.messages),
                             10, "the retained configs")
        assert set(configs) == expected_topics
        unique_ids = set()
        for topic, (payload, retained) in configs.items():
            assert retained, topic
            object_id = TOPIC.fullmatch(topic)["object_id"]
            quantity = object_id.removeprefix(CID + "_")
            config = json.loads(payload)
            assert set(config) <= SENSOR_KEYS, set(config) - SENSOR_KEYS
            assert config["unique_id"] == object_id
            unique_ids.add(config["unique_id"])
            assert isinstance(config["name"], str)
            assert config["name"]
            # state: the topic the quantity is published on, and a template that picks it
            assert config["state_topic"] == f"sensors/{CID}/{quantities()[quantity]}"
            assert config["value_template"] == "{{ value_json.%s }}" % quantity  # noqa: UP031 (Jinja braces)
            assert quantity in READINGS[config["state_topic"].split("/")[2]]
            # availability on status/<client_id>, with the payloads the firmware uses
            assert config["availability_topic"] == f"status/{CID}"
            assert config["payload_available"] == "online"
            assert config["payload_not_available"] == "offline"
            # unit, device class and state class
            if config.get("device_class"):
                assert config["unit_of_measurement"] in UNITS[config["device_class"]]
            if "state_class" in config:
                assert config["state_class"] in STATE_CLASSES
            if quantity in EXPECTED:
                got = (config.get("unit_of_measurement"), config.get("device_class"), config.get("state_class"))
                assert got == EXPECTED[quantity]
            assert config.get("entity_category", "diagnostic") == "diagnostic"
            if quantity in READINGS["system"] or quantity in ("gain", "integration_ms", "broadband", "ir"):
                assert config["entity_category"] == "diagnostic"
            # the device
            assert set(config["device"]) <= DEVICE_KEYS
            assert config["device"]["identifiers"] == [CID]
            assert config["device"]["connections"] == [["mac", MAC]]
            assert config["device"]["model"] == "Feather Huzzah ESP8266"
            assert config["device"]["name"] == CID
            assert config["device"]["sw_version"] == "0.2.0"  # the firmware's version from sensors/<cid>/system
            assert config["origin"] == {"name": "sensornet", "sw_version": __version__}
        assert len(unique_ids) == len(configs)

        # Home Assistant (re)starting says "online" on homeassistant/status: the configs come again
        count = len(ha.messages)
        ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(10)
        wait_until(lambda: len(configs_of(ha.messages[count:])) == len(expected_topics), 10, "the configs again")

        # Removing the device: its retained connect/ message cleared. Every config goes.
        count = len(ha.messages)
        device.publish(f"connect/{CID}", b"", retain=True)
        wait_until(lambda: {t for t, (p, _) in configs_of(ha.messages[count:]).items() if p == b""} == expected_topics,
                   10, "an empty retained message on every config topic")
        device.publish(f"status/{CID}", b"", retain=True)  # and its retained status: no card comes back
        ha.close()
        wait_until(lambda: dashboard.json("api/devices") == [], 5, "the device's card gone")
        fresh = home_assistant()
        # a marker from the same client: every retained message reaches it before its own publish
        fresh.client.publish("homeassistant/status", "offline", qos=1).wait_for_publish(10)
        wait_until(lambda: fresh.on("homeassistant/status"), 10, "the marker")
        assert configs_of(fresh.messages) == {}
        assert dashboard.json("api/devices") == []  # the cleared status did not bring the card back
    finally:
        device.close()
        assert dashboard.stop() == 0
