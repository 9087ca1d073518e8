"""sensornet.envelope: MQTT message -> envelope, wire encodings, receiving side. Plain bytes, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensornet.envelope import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_DEPTH,
    REJECT_REASONS,
    RejectedMessage,
    encode_line,
    encode_text,
    format_timestamp,
    message_id,
    parse_message,
    parse_message_text,
)
from sensornet.receive import LineSplitter, MalformedEnvelope, decode_envelope

WHEN = datetime(2026, 11, 21, 14, 30, 0, 123456, tzinfo=UTC)
STAMP = "2026-11-21T14:30:00.123Z"
CLIENT = "huzzah-00a1b2c3"
TSL = (b'{"lux": 12.3, "broadband": 120, "ir": 30, "gain": 16, "integration_ms": 402, "seq": 7}')


def clock() -> datetime:
    return WHEN


def parse(topic, payload: bytes, **kwargs):
    return parse_message(topic, payload, clock=clock, **kwargs)


def reason_of(topic, payload: bytes, **kwargs) -> str:
    with pytest.raises(RejectedMessage) as info:
        parse(topic, payload, **kwargs)
    assert info.value.reason in REJECT_REASONS
    return info.value.reason


# ---- accepted messages: one per row of the topic contract ----

def test_tsl2561_reading_becomes_envelope():
    assert parse(f"sensors/{CLIENT}/tsl2561", TSL, qos=1) == {
        "topic": f"sensors/{CLIENT}/tsl2561", "client_id": CLIENT, "kind": "tsl2561",
        "payload": {"lux": 12.3, "broadband": 120, "ir": 30, "gain": 16, "integration_ms": 402, "seq": 7},
        "received_at": STAMP, "ts": None, "id": message_id(f"sensors/{CLIENT}/tsl2561", TSL)}


def test_saturated_reading_keeps_null_lux():
    payload = b'{"lux": null, "broadband": 65535, "ir": 65535, "gain": 1, "integration_ms": 13, "seq": 8}'
    assert parse(f"sensors/{CLIENT}/tsl2561", payload)["payload"]["lux"] is None


def test_i2c_scan():
    env = parse(f"sensors/{CLIENT}/i2c", b'{"addresses": [57, 119]}')
    assert (env["kind"], env["payload"]) == ("i2c", {"addresses": [57, 119]})


def test_connect_carries_mac_as_text():
    env = parse(f"connect/{CLIENT}", b"aa:bb:cc:dd:ee:ff", retain=True, qos=1)
    assert env == {"topic": f"connect/{CLIENT}", "client_id": CLIENT, "kind": "connect",
                   "payload": "aa:bb:cc:dd:ee:ff", "received_at": STAMP, "ts": None,
                   "id": message_id(f"connect/{CLIENT}", b"aa:bb:cc:dd:ee:ff")}


@pytest.mark.parametrize(("payload", "value"), [(b"online", "online"), (b"offline", "offline"),
                                            (b"", ""), (b"1", 1), (b'"x"', "x"), (b"NaN", "NaN")])
def test_status_is_json_value_or_text(payload, value):
    env = parse(f"status/{CLIENT}", payload, retain=True)
    assert (env["kind"], env["payload"]) == ("status", value)


def test_topic_may_be_utf8_bytes():
    assert parse(f"status/{CLIENT}".encode(), b"online")["client_id"] == CLIENT


def test_payload_at_limit_is_accepted():
    payload = b'{"pad": "' + b"x" * (DEFAULT_MAX_PAYLOAD_BYTES - 11) + b'"}'
    assert len(payload) == DEFAULT_MAX_PAYLOAD_BYTES
    assert parse(f"sensors/{CLIENT}/blob", payload)["kind"] == "blob"


# ---- id and ts ----

def test_id_is_stable_for_the_same_message_and_differs_otherwise():
    first = parse(f"sensors/{CLIENT}/tsl2561", TSL)["id"]
    assert parse(f"sensors/{CLIENT}/tsl2561".encode(), TSL)["id"] == first  # a redelivery: same id
    assert parse(f"sensors/{CLIENT}/tsl2561", TSL.replace(b"7}", b"8}"))["id"] != first
    assert parse(f"sensors/{CLIENT}/other", TSL)["id"] != first
    assert len(first) == 24
    assert int(first, 16) >= 0


def test_ts_is_passed_through_from_the_payload():
    assert parse(f"sensors/{CLIENT}/tsl2561", b'{"lux": 1.0, "seq": 1, "ts": 1795271400}')["ts"] == 1795271400
    assert parse(f"sensors/{CLIENT}/tsl2561", b'{"lux": 1.0, "seq": 1}')["ts"] is None
    assert parse(f"sensors/{CLIENT}/tsl2561", b'{"ts": "yesterday"}')["ts"] is None
    assert parse(f"sensors/{CLIENT}/tsl2561", b'{"ts": true}')["ts"] is None
    assert parse(f"status/{CLIENT}", b"online")["ts"] is None


def test_text_form_is_the_envelope_encoded():
    for topic, payload in ((f"sensors/{CLIENT}/tsl2561", TSL), (f"status/{CLIENT}", b"online"),
                           (f"sensors/{CLIENT}/x", b'{"ts": 5, "a": [1.5, "\\u00e9"]}')):
        env, text = parse_message_text(topic, payload, clock=clock)
        assert text == encode_text(env)


# ---- poison payloads: rejected at parse time, never at send time ----

@pytest.mark.parametrize("payload", [b'{"lux": 1e999}', b'{"lux": -1e999}', b"[1e400]", b"1e999"])
def test_non_finite_numbers_are_rejected(payload):
    assert reason_of(f"sensors/{CLIENT}/tsl2561", payload) == "not_encodable"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 980, 997, 2000])
def test_nesting_beyond_the_stated_depth_is_rejected(depth):
    assert reason_of(f"sensors/{CLIENT}/x", b"[" * depth + b"]" * depth) == "too_deep"
    assert reason_of(f"sensors/{CLIENT}/x", b'{"a":' * depth + b"1" + b"}" * depth) == "too_deep"


def test_nesting_up_to_the_stated_depth_is_accepted():
    env = parse(f"sensors/{CLIENT}/x", b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert encode_line(env).endswith(b"\n")


def test_status_that_would_not_encode_is_kept_as_text():
    assert parse(f"status/{CLIENT}", b"1e999")["payload"] == "1e999"


# ---- received_at ----

def test_timestamp_is_utc_with_milliseconds_and_z():
    assert format_timestamp(WHEN) == STAMP
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"


def test_timestamp_converts_other_zones_and_truncates():
    cet = timezone(timedelta(hours=1))
    assert format_timestamp(datetime(2026, 11, 21, 15, 30, 0, 999999, tzinfo=cet)) == "2026-11-21T14:30:00.999Z"


def test_naive_timestamp_is_taken_as_utc():
    assert format_timestamp(WHEN.replace(tzinfo=None)) == STAMP


# ---- rejected messages ----

@pytest.mark.parametrize("topic", ["foo/x", "$SYS/broker/uptime", "sensor/x/tsl2561", "", "/connect/x",
                                   "Connect/x"])
def test_unknown_topic(topic):
    assert reason_of(topic, b"online") == "unknown_topic"


@pytest.mark.parametrize("topic", ["connect", "connect/", "connect/a/b", "status/a/b", "sensors/x",
                                   "sensors/x/", "sensors//tsl2561", "sensors/x/tsl2561/extra",
                                   "status/has space", "status/tab\there", "sensors/x/+", "status/#",
                                   "status/nul\x00", "status/line\u2028sep"])
def test_bad_topic_shape(topic):
    assert reason_of(topic, b"{}") == "bad_topic"


def test_payload_not_utf8():
    assert reason_of(f"status/{CLIENT}", b"\xffonline") == "not_utf8"
    assert reason_of(f"sensors/{CLIENT}/tsl2561", b'{"lux": "\xc3"}') == "not_utf8"


def test_topic_not_utf8():
    assert reason_of(b"status/\xff", b"online") == "not_utf8"


@pytest.mark.parametrize("payload", [b"", b"{", b"lux=3", b'{"lux": NaN}', b"Infinity", b"[1,]",
                                     b"1" * 5000])
def test_sensor_payload_must_be_json(payload):
    assert reason_of(f"sensors/{CLIENT}/tsl2561", payload) == "bad_json"


def test_too_large_checked_before_decoding():
    assert reason_of(f"sensors/{CLIENT}/tsl2561", b"\xff" * (DEFAULT_MAX_PAYLOAD_BYTES + 1)) == "too_large"
    assert reason_of(f"status/{CLIENT}", b"online", max_payload_bytes=5) == "too_large"


def test_rejection_names_topic_and_flags():
    with pytest.raises(RejectedMessage) as info:
        parse(f"sensors/{CLIENT}/tsl2561", b"{", qos=1, retain=True)
    assert info.value.topic == f"sensors/{CLIENT}/tsl2561"
    assert "QoS 1, retained" in info.value.detail


# ---- encodings ----

def test_text_frame_and_line_are_compact_json():
    env = parse(f"sensors/{CLIENT}/tsl2561", TSL)
    text = encode_text(env)
    assert " " not in text
    assert json.loads(text) == env
    line = encode_line(env)
    assert line == text.encode() + b"\n"
    assert line.count(b"\n") == 1


def test_encodings_are_ascii_even_for_lone_surrogates():
    env = parse(f"sensors/{CLIENT}/note", '{"text": "caf\u00e9 \\ud800 \u2028"}'.encode())
    line = encode_line(env)
    assert line.isascii()
    assert line.count(b"\n") == 1
    assert decode_envelope(line[:-1]) == env


# ---- receiving side ----

def test_decode_envelope_round_trip_keeps_extra_keys():
    env = parse(f"connect/{CLIENT}", b"aa:bb:cc:dd:ee:ff")
    assert decode_envelope(encode_text(env)) == env
    assert decode_envelope(json.dumps({**env, "via": "ws"}))["via"] == "ws"


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff", "not_utf8"), ("{", "bad_json"), ("[1]", "not_object"),
    ('{"topic": "status/x"}', "missing_key"),
    ('{"topic": "status/a b", "client_id": "a", "kind": "status", "payload": 1, '
     '"received_at": "2026-11-21T14:30:00.123Z"}', "bad_value"),
    ('{"topic": "status/a", "client_id": "a", "kind": "status", "payload": 1, "received_at": "yesterday"}',
     "bad_value"),
    ('{"topic": 5, "client_id": "a", "kind": "status", "payload": 1, '
     '"received_at": "2026-11-21T14:30:00.123Z"}', "bad_value"),
])
def test_decode_envelope_rejects(data, reason):
    with pytest.raises(MalformedEnvelope) as info:
        decode_envelope(data)
    assert info.value.reason == reason


def test_line_splitter_joins_chunks_and_skips_blank_lines():
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":') == []
    assert splitter.feed(b'1}\r\n\n  \n{"b"') == [("line", b'{"a":1}')]
    assert splitter.feed(b":2}\n") == [("line", b'{"b":2}')]


def test_line_splitter_discards_overlong_line_once():
    splitter = LineSplitter(max_line_bytes=8)
    assert splitter.feed(b"x" * 20) == []
    assert splitter.feed(b"y" * 5 + b"\nok\n") == [("too_long", 25), ("line", b"ok")]
    assert splitter.feed(b"0123456789\nfine\n") == [("too_long", 10), ("line", b"fine")]


# ---- properties: whatever the bytes, only RejectedMessage ----

TOPICS = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(lambda root, cid, rest: "/".join([root, cid, *rest]),
              st.sampled_from(["connect", "status", "sensors"]), st.text(max_size=12),
              st.lists(st.text(max_size=8), max_size=2)),
)
PAYLOADS = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(topic=TOPICS, payload=PAYLOADS, retain=st.booleans(), qos=st.sampled_from([0, 1, 2]))
def test_any_message_is_envelope_or_rejected(topic, payload, retain, qos):
    rejected = None
    try:
        env = parse_message(topic, payload, retain=retain, qos=qos, clock=clock, max_payload_bytes=200)
    except RejectedMessage as e:  # the one exception it may raise, with a known reason
        rejected = e
    if rejected is not None:
        assert rejected.reason in REJECT_REASONS
        return
    assert set(env) == {"topic", "client_id", "kind", "payload", "received_at", "ts", "id"}
    assert decode_envelope(encode_text(env)) == env
    line = encode_line(env)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_envelope(line[:-1]) == env


@settings(max_examples=200, deadline=None)
@given(value=JSON, sensor=st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True))
def test_any_json_sensor_payload_round_trips(value, sensor):
    payload = json.dumps(value).encode()
    env = parse_message(f"sensors/{CLIENT}/{sensor}", payload, clock=clock, max_payload_bytes=10 ** 6)
    assert env["payload"] == value
    assert decode_envelope(encode_line(env)[:-1]) == env


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=30), max_size=10))
def test_line_splitter_never_loses_short_lines(chunks):
    data = b"".join(chunks)
    splitter = LineSplitter(max_line_bytes=1000)
    events = [e for chunk in chunks for e in splitter.feed(chunk)]
    expected = [line.removesuffix(b"\r") for line in data.split(b"\n")[:-1]]
    assert [v for _, v in events] == [line for line in expected if line.strip()]
