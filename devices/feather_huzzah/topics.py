# The topic contract, written once (README, "Topic contract"). The firmware imports this file
# (MicroPython, esp8266 port); the Pi side imports the same file as `feather_huzzah.topics`
# for the bridge's subscriptions, topic parsing, the demo and the ACL test.
#
#   connect/<client_id>          Wi-Fi MAC "aa:bb:cc:dd:ee:ff"      retained, QoS 1, every (re)connect
#   status/<client_id>           ONLINE; last will OFFLINE          retained, QoS 1
#   sensors/<client_id>/<name>   JSON reading of sensor <name>      QoS 1
#   cmd/<client_id>/<name>       a remote command (the device subscribes to its own)
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


def connect(client_id):
    """connect/<client_id> (str)."""
    return CONNECT + "/" + client_id


def status(client_id):
    """status/<client_id> (str): ONLINE, and the last will OFFLINE."""
    return STATUS + "/" + client_id


def sensor(client_id, name):
    """sensors/<client_id>/<name> (str)."""
    return SENSORS + "/" + client_id + "/" + name


def cmd(client_id, name):
    """cmd/<client_id>/<name> (str); name "#" gives the device's subscription filter."""
    return CMD + "/" + client_id + "/" + name


def client_id(unique_id):
    """The default client id (str): "huzzah-" + lowercase hex of `unique_id` (bytes, as
    machine.unique_id() returns: on the esp8266 port the chip id's 4 bytes, little-endian)."""
    return CLIENT_ID_PREFIX + "".join(f"{b:02x}" for b in unique_id)
