"""sensornet: the Pi side of an MQTT sensor network of ESP8266 Feather Huzzahs.

Modules (each command has `main(argv) -> int`, run by `sensornet <command>`):
  cli        the `sensornet` console command
  broker     `sensornet broker`: Mosquitto with the repo's broker/mosquitto.conf and broker/acl
  bridge     `sensornet bridge`: forward device messages from the broker to WebSocket and TCP
             endpoints; with mqttloop (paho driven from the asyncio loop), store (the durable
             SQLite store and per-endpoint cursors), senders (endpoint connections and
             acknowledgements), outbox (backoff, counters), service (systemd notification,
             Prometheus metrics), bridge_config (TOML + flags)
  envelope   the I/O-free core: topic parsing, payload checks, envelope encoding
  endpoint   `sensornet endpoint`: the reference receiver
  clientid   `sensornet client-id`: a board's client id from its MAC
  demo       `sensornet demo`: the whole chain with virtual boards (needs the `sim` extra)
  paths      where the checkout's non-Python parts are

The topic contract comes from the firmware's own feather_huzzah.topics. sensornet imports
virtual_huzzah only in `demo` and the `sim` command; virtual_huzzah never imports sensornet.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sensornet")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
