"""sensornet: the Pi side of an MQTT sensor network of ESP8266 Feather Huzzahs.

Subpackages and modules:
  broker    run Mosquitto with the repo's configuration (broker/mosquitto.conf)
  bridge    forward device messages from the broker to WebSocket and TCP endpoints
  endpoint  the reference receiver: prints what the bridge forwards
  cli       the `sensornet` console command
"""

__version__ = "0.1.0"
