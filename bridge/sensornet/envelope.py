"""Envelopes: the I/O-free core shared by the bridge and the endpoint.

No sockets, threads or clocks of its own, in the style of python-websockets' Sans-I/O layer:
values in, values (or a RejectedMessage) out; sensornet.receive is the receiving side's counterpart.

An envelope is one device message as the bridge forwards it, a dict with exactly these keys:

    {"topic": "sensors/huzzah-00a1b2c3/tsl2561",   # MQTT topic name (str)
     "client_id": "huzzah-00a1b2c3",               # second topic level (str)
     "kind": "tsl2561",                            # "connect", "status" or the sensor name (str)
     "payload": {"lux": 12.3, ...},                # parsed JSON value, or the UTF-8 text
     "received_at": "2026-11-21T14:30:00.123Z",    # when the bridge got it: ISO 8601, UTC, ms
     "ts": 1795271400,                             # the device's capture time (payload "ts", Unix s) or null
     "id": "5f0c2a9d1e7b4c3a8d2f6e01"}             # stable id: the same message always gets the same id

`id` is the first 12 bytes of BLAKE2b over the topic, a NUL and the payload bytes, in hex: a
message the broker or the bridge's store delivers again carries the same id, so a receiver drops
duplicates by id. (Two byte-identical messages on one topic share an id; a reading's "seq", and
"ts" once the device clock is set, tell real readings apart.)

The topics devices publish are the topic contract of feather_huzzah.topics (the firmware's
own topics.py): connect/<client_id> (the MAC, text), status/<client_id> (online/offline, text)
and sensors/<client_id>/<sensor> (a JSON document).

Wire encodings: `encode_text` gives the str for one WebSocket text frame, `encode_line` the
bytes for one line of newline-delimited JSON over TCP. Both are compact, ASCII-only JSON, so a
line never contains a newline byte and any JSON string (even a lone surrogate escape) encodes.
The receiving side (sensornet.receive) splits a TCP byte stream with `LineSplitter` and checks
each line or frame with `decode_envelope`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from feather_huzzah import topics

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024
"""Largest payload accepted, in bytes (the broker's max_packet_size is also 16 KiB)."""

ENVELOPE_KEYS = ("topic", "client_id", "kind", "payload", "received_at")
"""The keys every envelope has and decode_envelope requires; the bridge adds "ts" and "id" (kept as extras)."""

MAX_DEPTH = 32
"""Deepest nesting of JSON arrays/objects accepted in a payload (a reading has depth 1 or 2)."""

SUBSCRIPTIONS = (topics.connect("+"), topics.status("+"), topics.sensor("+", "+"))
"""The topic filters the bridge subscribes to (QoS 1): every topic devices publish, nothing else."""

# Reason codes carried by RejectedMessage.reason (the bridge counts rejections per code).
UNKNOWN_TOPIC = "unknown_topic"  # first topic level is not connect, status or sensors
BAD_TOPIC = "bad_topic"          # right first level, wrong number of levels, empty level, whitespace
NOT_UTF8 = "not_utf8"            # topic or payload bytes are not valid UTF-8
BAD_JSON = "bad_json"            # a sensors/ payload that is not a JSON document
TOO_LARGE = "too_large"          # payload longer than the size limit
TOO_DEEP = "too_deep"            # a sensors/ payload nested deeper than MAX_DEPTH
NOT_ENCODABLE = "not_encodable"  # a sensors/ payload JSON cannot carry (1e999 parses to infinity)
REJECT_REASONS = (UNKNOWN_TOPIC, BAD_TOPIC, NOT_UTF8, BAD_JSON, TOO_LARGE, TOO_DEEP, NOT_ENCODABLE)

# A topic level the line format can carry: no whitespace, no control characters, no wildcards
# (MQTT 3.1.1 section 4.7.1: `+` and `#` never appear in a topic name).
_LEVEL = re.compile(r"[^\s\x00-\x1f\x7f+#]+")


class RejectedMessage(ValueError):
    """An MQTT message that breaks the topic contract and is not forwarded.

    reason: one of REJECT_REASONS (str), for counting; detail: human-readable explanation (str);
    topic: the topic as received (str; bytes shown with repr() when not UTF-8).
    """

    def __init__(self, reason: str, detail: str, topic: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.topic = topic


def utc_now() -> datetime:
    """The default clock: the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Format a datetime as ISO 8601 UTC with milliseconds and a Z: "2026-11-21T14:30:00.123Z".

    Aware datetimes are converted to UTC; naive ones are taken to be UTC already.
    Sub-millisecond digits are truncated, not rounded (so a timestamp never moves forward).
    """
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # isoformat() truncates to milliseconds; the offset of a UTC datetime is always "+00:00".
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def split_topic(topic: str | bytes) -> tuple[str, str, str]:
    """Split a topic name into (topic, client_id, kind), or raise RejectedMessage.

    topic: str, or the raw bytes from the wire. Topic levels are separated by "/" (MQTT 3.1.1
    section 4.7.1). Accepted shapes: connect/<client_id>, status/<client_id>,
    sensors/<client_id>/<sensor>; every level non-empty, without whitespace, control
    characters or wildcards. kind is "connect", "status" or <sensor>.
    Raises RejectedMessage with reason not_utf8, unknown_topic or bad_topic.
    """
    if isinstance(topic, (bytes, bytearray)):
        raw = bytes(topic)
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RejectedMessage(NOT_UTF8, "topic is not valid UTF-8", repr(raw)) from None
    levels = topic.split("/")
    root = levels[0]
    if root not in (topics.CONNECT, topics.STATUS, topics.SENSORS):
        raise RejectedMessage(UNKNOWN_TOPIC, f"topic {topic!r} is not {', '.join(SUBSCRIPTIONS)}", topic)
    sensor = root == topics.SENSORS
    shape = topics.sensor("<client_id>", "<sensor>") if sensor else f"{root}/<client_id>"
    if len(levels) != (3 if sensor else 2) or not all(_LEVEL.fullmatch(level) for level in levels):
        raise RejectedMessage(BAD_TOPIC, f"topic {topic!r} is not {shape} (non-empty levels, "
                                         "no whitespace or wildcards)", topic)
    kind = levels[2] if sensor else root
    return topic, levels[1], kind


_NESTED_TOO_DEEPLY = "JSON nested too deeply"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder and one encoder for every call (json.loads/json.dumps with options build a new one each time).
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_encode = _encoder.encode
# JSONEncoder.encode() builds its C encoder (and a circularity check) on every call; for values
# from the JSON parser, which cannot be circular, one C encoder with the same options serves all.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_parsed_chunks = None if _c_make_encoder is None else _c_make_encoder(
    None, _encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)


def _encode_parsed(value: Any) -> str:
    """encode_json(value) for a value parse_json returned (raises the same ValueError for 1e999)."""
    if _encode_parsed_chunks is None:
        return encode_json(value)
    return "".join(_encode_parsed_chunks(value, 0))


def parse_json(text: str) -> Any:
    """Parse a strict JSON document (RFC 8259): NaN and Infinity are refused.

    Raises ValueError for anything else, including nesting too deep for the parser and
    integers too long for int() (Python's 4300-digit limit).
    """
    try:
        return _decode(text)
    except RecursionError:
        raise ValueError(_NESTED_TOO_DEEPLY) from None


def _depth(value: Any) -> int:
    """Nesting depth of arrays/objects in a parsed JSON value (0 for a scalar), iteratively."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _check_value(text: str, value: Any) -> str:
    """The compact JSON of a parsed `value`, or ValueError naming TOO_DEEP or NOT_ENCODABLE."""
    # Fewer opening brackets than MAX_DEPTH in the text cannot nest deeper: skip the walk.
    if (text.count("[") + text.count("{") > MAX_DEPTH) and _depth(value) > MAX_DEPTH:
        raise ValueError(TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    try:
        return _encode_parsed(value)
    except (ValueError, RecursionError) as e:  # non-finite floats: 1e999, -1e999
        raise ValueError(NOT_ENCODABLE, f"cannot be encoded as JSON ({e})") from None


def decode_payload(payload: bytes, kind: str, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Any:
    """Turn payload bytes into the envelope's payload value.

    For a sensor kind (anything but "connect" and "status") the payload must be a JSON
    document, at most MAX_DEPTH deep, with finite numbers only; for connect and status it is the
    parsed JSON value when it is one ("1" -> 1), else the text ("online", "aa:bb:cc:dd:ee:ff",
    "" for a cleared retained message).
    Raises RejectedMessage with reason too_large (over `max_payload_bytes` bytes), not_utf8,
    bad_json, too_deep or not_encodable.
    """
    return _decode_payload(payload, kind, max_payload_bytes)[0]


def _decode_payload(payload: bytes, kind: str, max_payload_bytes: int) -> tuple[Any, str]:
    if len(payload) > max_payload_bytes:
        raise RejectedMessage(TOO_LARGE, f"payload is {len(payload)} bytes, limit {max_payload_bytes}")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RejectedMessage(NOT_UTF8, f"payload is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    textual = kind in (topics.CONNECT, topics.STATUS)
    try:
        value = parse_json(text)
    except ValueError as e:
        if textual:
            return text, encode_json(text)
        if str(e) == _NESTED_TOO_DEEPLY:
            raise RejectedMessage(TOO_DEEP, f"sensor payload nested deeper than {MAX_DEPTH} levels") from None
        raise RejectedMessage(BAD_JSON, f"sensor payload is not JSON ({e})") from None
    try:
        return value, _check_value(text, value)
    except ValueError as e:
        if textual:
            return text, encode_json(text)
        reason, detail = e.args
        raise RejectedMessage(reason, f"sensor payload {detail}") from None


def _id_prefix(topic: str | bytes) -> Any:
    """BLAKE2b-96 fed with the topic bytes and the NUL: message_id's state before the payload."""
    raw = topic.encode("utf-8", "surrogatepass") if isinstance(topic, str) else bytes(topic)
    return hashlib.blake2b(raw + b"\0", digest_size=12)


def message_id(topic: str | bytes, payload: bytes) -> str:
    """The envelope's stable id (24 hex digits): BLAKE2b-96 of the topic bytes, NUL, the payload."""
    state = _id_prefix(topic)
    state.update(payload)
    return str(state.hexdigest())


def _capture_ts(value: Any) -> int | None:
    ts = value.get("ts") if isinstance(value, dict) else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def parse_message(topic: str | bytes, payload: bytes, *, retain: bool = False, qos: int = 0,
                  clock: Callable[[], datetime] = utc_now,
                  max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """Turn one received MQTT message into an envelope dict (see the module docstring).

    topic: the topic name (str or UTF-8 bytes); payload: the application message (bytes);
    retain, qos: the PUBLISH flags as received. They do not change the envelope (a retained
    message delivered on subscription is still the device's latest connect/status) and are
    named in the RejectedMessage's detail for logs. clock: returns the receive time as a
    datetime (aware; naive is taken as UTC). max_payload_bytes: size limit in bytes.

    Raises RejectedMessage (reason in REJECT_REASONS) and nothing else, whatever the bytes.
    Every envelope it returns encodes (encode_text, encode_line) without error.
    """
    return parse_message_text(topic, payload, retain=retain, qos=qos, clock=clock,
                              max_payload_bytes=max_payload_bytes)[0]


# topic as received -> (topic, client_id, kind, the envelope's JSON up to its payload, the id's
# hash state after the topic), for topics seen before (a few per device); emptied when it grows
# past _TOPIC_CACHE_MAX.
_topic_cache: dict[str | bytes, tuple[str, str, str, str, Any]] = {}
_TOPIC_CACHE_MAX = 10_000


def _topic_parts(topic: str | bytes) -> tuple[str, str, str, str, Any]:
    parts = _topic_cache.get(topic)
    if parts is None:
        topic_text, client_id, kind = split_topic(topic)
        head = (f'{{"topic":{encode_json(topic_text)},"client_id":{encode_json(client_id)},'
                f'"kind":{encode_json(kind)},"payload":')
        if len(_topic_cache) >= _TOPIC_CACHE_MAX:
            _topic_cache.clear()
        parts = _topic_cache[topic] = (topic_text, client_id, kind, head, _id_prefix(topic))
    return parts


def parse_message_text(topic: str | bytes, payload: bytes, *, retain: bool = False, qos: int = 0,
                       clock: Callable[[], datetime] = utc_now,
                       max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                       received_at: str | None = None) -> tuple[dict[str, Any], str]:
    """parse_message() and the envelope's encode_text() in one pass (the payload is encoded once).

    received_at: the envelope's received_at (format_timestamp's format) when the caller took it
    already (the bridge takes it once per batch); None: format_timestamp(clock()).
    """
    topic_text, client_id, kind, head, id_prefix = _topic_parts(topic)
    try:
        value, value_json = _decode_payload(payload, kind, max_payload_bytes)
    except RejectedMessage as e:
        flags = f"QoS {qos}{', retained' if retain else ''}"
        raise RejectedMessage(e.reason, f"{e.detail} ({flags})", topic_text) from None
    if received_at is None:
        received_at = format_timestamp(clock())
    ts = _capture_ts(value)
    state = id_prefix.copy()  # message_id(topic, payload), the topic's part hashed once
    state.update(payload)
    ident = state.hexdigest()
    envelope = {"topic": topic_text, "client_id": client_id, "kind": kind, "payload": value,
                "received_at": received_at, "ts": ts, "id": ident}
    # The same text encode_json(envelope) gives, without encoding the payload a second time.
    text = f'{head}{value_json},"received_at":"{received_at}","ts":{"null" if ts is None else ts},"id":"{ident}"}}'
    return envelope, text


def encode_json(value: Any) -> str:
    """Compact, ASCII-only JSON for an envelope or a payload value (str, no newline)."""
    return _encode(value)


def encode_text(envelope: dict[str, Any]) -> str:
    """The envelope as the str of one WebSocket text frame."""
    return encode_json(envelope)


def encode_line(envelope: dict[str, Any]) -> bytes:
    """The envelope as one line of newline-delimited JSON for TCP: ASCII JSON + b"\\n"."""
    return encode_json(envelope).encode("ascii") + b"\n"
