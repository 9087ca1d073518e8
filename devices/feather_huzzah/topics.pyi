# Types of topics.py, the topic contract, for the Pi side's type checking (mypy). topics.py is
# firmware: it stays plain MicroPython, without typing imports (they would cost the board heap).
# Keep the two in step; only topics.py is copied to a board (the bootstrap and the virtual board
# copy *.py).
from typing import Final

CONNECT: Final[str]
STATUS: Final[str]
SENSORS: Final[str]
CMD: Final[str]
ONLINE: Final[str]
OFFLINE: Final[str]
QOS: Final[int]
CLIENT_ID_PREFIX: Final[str]
TSL2561: Final[str]
I2C: Final[str]
BME280: Final[str]
SYSTEM: Final[str]
ERROR: Final[str]
CMD_INTERVAL: Final[str]
CMD_IDENTIFY: Final[str]
CMD_REBOOT: Final[str]
CMD_STATUS: Final[str]

def connect(client_id: str) -> str: ...
def status(client_id: str) -> str: ...
def sensor(client_id: str, name: str) -> str: ...
def error(client_id: str) -> str: ...
def system(client_id: str) -> str: ...
def cmd(client_id: str, name: str) -> str: ...
def client_id(unique_id: bytes) -> str: ...
