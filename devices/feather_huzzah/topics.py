# The topic contract, written once (README, "Topic contract"). The firmware imports this file
# (MicroPython, esp8266 port); the Pi side imports the same file as `feather_huzzah.topics`
# for the bridge's subscriptions, topic parsing, the demo and the ACL test.
#
#   connect/<client_id>          Wi-Fi MAC "aa:bb:cc:dd:ee:ff"      retained, QoS 1, every (re)connect
#   status/<client_id>           ONLINE; last will OFFLINE          retained, QoS 1
#   sensors/<client_id>/<name>   JSON reading of sensor <name>      QoS 1
#   sensors/<client_id>/system   JSON health (uptime, heap, RSSI...)  QoS 1, every N readings and connect
#   cmd/<client_id>/<name>       a remote command (the device subscribes to its own cmd/<client_id>/#)
#   status/<client_id>/error     JSON {"cmd": name, "error": text}  QoS 1: the reply to a bad command
try:
    from micropython import const
except ImportError:  # CPython: the bridge, the virtual board's host side, the tests

    def const(value):
        return value


CONNECT = const("connect")
STATUS = const("status")
SENSORS = const("sensors")
CMD = const("cmd")
ONLINE = const("online")  # retained on status/<client_id> after every connect
OFFLINE = const("offline")  # the last will on status/<client_id>, retained
QOS = const(1)
CLIENT_ID_PREFIX = const("huzzah-")  # + lowercase hex of machine.unique_id()
TSL2561 = const("tsl2561")  # sensor names: the third level of sensors/<client_id>/<name>
I2C = const("i2c")
BME280 = const("bme280")
SYSTEM = const("system")  # health: sensors/<client_id>/system
ERROR = const("error")  # status/<client_id>/error
# remote commands: the third level of cmd/<client_id>/<name>
CMD_INTERVAL = const("interval")  # payload: seconds (a number, bounded; settings.py's range)
CMD_IDENTIFY = const("identify")  # blink the blue LED (GPIO2) for 10 s
CMD_REBOOT = const("reboot")
CMD_STATUS = const("status")  # publish health (sensors/<client_id>/system) now


def connect(client_id):
    """connect/<client_id> (str)."""
    return CONNECT + "/" + client_id


def status(client_id):
    """status/<client_id> (str): ONLINE, and the last will OFFLINE."""
    return STATUS + "/" + client_id


def sensor(client_id, name):
    """sensors/<client_id>/<name> (str)."""
    return SENSORS + "/" + client_id + "/" + name


def error(client_id):
    """status/<client_id>/error (str): the device's reply to a bad command."""
    return STATUS + "/" + client_id + "/" + ERROR


def system(client_id):
    """sensors/<client_id>/system (str): health."""
    return SENSORS + "/" + client_id + "/" + SYSTEM


def cmd(client_id, name):
    """cmd/<client_id>/<name> (str); name "#" gives the device's subscription filter."""
    return CMD + "/" + client_id + "/" + name


def client_id(unique_id):
    """The default client id (str): "huzzah-" + lowercase hex of `unique_id` (bytes, as
    machine.unique_id() returns: on the esp8266 port the chip id's 4 bytes, little-endian)."""
    return CLIENT_ID_PREFIX + "".join(f"{b:02x}" for b in unique_id)
