"""sensornet.store (a real SQLite file) and the path parse -> store -> send -> receive for any message."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sensornet.envelope import RejectedMessage, parse_message_text
from sensornet.receive import LineSplitter, decode_envelope
from sensornet.senders import parse_ack
from sensornet.store import Store, store_path

A, B = "ws://a:1", "tcp://b:2"


def test_append_fetch_and_cursors(tmp_path):
    store = Store(tmp_path / "s.sqlite3", [A, B], max_bytes=10 ** 6)
    assert store.append([b"one", b"two", b"three"]) == 3
    assert store.fetch(0, 2) == [(1, b"one"), (2, b"two")]
    assert store.fetch(2, 10) == [(3, b"three")]
    assert (store.backlog(A), store.stored_bytes) == (3, 11)
    store.advance(A, 2)
    assert store.fetch(0, 10)[0] == (1, b"one")  # B has not got it: kept
    store.advance(B, 1)
    assert store.fetch(0, 10) == [(2, b"two"), (3, b"three")]
    assert store.stored_bytes == 8
    store.advance(B, 1)  # a cursor never goes back
    assert store.cursors == {A: 2, B: 1}


def test_reopened_store_keeps_rows_and_cursors_and_never_reuses_a_seq(tmp_path):
    path = store_path(tmp_path, "bridge")
    store = Store(path, [A, B], max_bytes=10 ** 6)
    store.append([b"x" * 10, b"y" * 10])
    store.advance(A, 2)
    store.close()
    again = Store(path, [A, B], max_bytes=10 ** 6)
    assert (again.cursors, again.stored_bytes, again.last_seq) == ({A: 2, B: 0}, 20, 2)
    again.advance(B, 2)  # empty now
    again.close()
    third = Store(path, [A, "ws://new:3"], max_bytes=10 ** 6)  # B dropped, a new endpoint added
    assert third.append([b"z"]) == 3
    assert third.cursors == {A: 2, "ws://new:3": 2}
    assert third.fetch(2, 10) == [(3, b"z")]


def test_a_new_endpoint_gets_what_arrives_from_now_on_and_a_removed_one_releases_its_rows(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path, [A], max_bytes=10 ** 6)
    store.append([b"old1", b"old2"])
    store.close()
    again = Store(path, [B], max_bytes=10 ** 6)  # A no longer configured, B new
    assert again.cursors == {B: 2}
    assert (again.stored_bytes, again.fetch(0, 10)) == (0, [])
    again.append([b"new"])
    assert again.fetch(again.cursors[B], 10) == [(3, b"new")]


def test_full_at_the_byte_bound(tmp_path):
    store = Store(tmp_path / "s.sqlite3", [A], max_bytes=100)
    store.append([b"x" * 60])
    assert not store.full
    store.append([b"x" * 40])
    assert store.full
    store.advance(A, 1)
    assert not store.full
    assert store.oldest_unacked_age() >= 0


def test_acknowledgements():
    assert parse_ack('{"ack":12}') == 12
    assert parse_ack(b'{"ack": 0}\n') == 0
    for bad in ('{"ack":-1}', '{"ack":true}', '{"ack":"1"}', "[1]", '{"nak":1}'):
        try:
            parse_ack(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


TOPICS = st.one_of(
    st.binary(max_size=30),
    st.builds(lambda root, cid, rest: "/".join([root, cid, *rest]),
              st.sampled_from(["connect", "status", "sensors"]), st.text(max_size=10),
              st.lists(st.text(max_size=8), max_size=2)),
)
JSONISH = st.recursive(
    st.sampled_from([b"null", b"1e999", b"-1e999", b"1.5", b"NaN", b"\"\\ud800\"", b"12345678901234567890"]),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: b"[" + b",".join(xs) + b"]")
    | st.lists(inner, max_size=3).map(lambda xs: b"{" + b",".join(b'"k%d":%s' % (i, x) for i, x in enumerate(xs))
                                      + b"}"), max_leaves=12)
PAYLOADS = st.one_of(st.binary(max_size=200), JSONISH, st.integers(1, 60).map(lambda n: b"[" * n + b"]" * n))


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.tuples(TOPICS, PAYLOADS), max_size=8))
def test_any_messages_parse_store_send_and_arrive_intact(messages):
    """Whatever the bytes: rejected (RejectedMessage) or stored, sent as a TCP line and decoded
    on the receiving side as the same envelope."""
    accepted = []
    for topic, payload in messages:
        try:
            accepted.append(parse_message_text(topic, payload, max_payload_bytes=150))
        except RejectedMessage:
            continue
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.sqlite3", [B], max_bytes=10 ** 6, synchronous="OFF")
        store.append(text.encode("ascii") for _, text in accepted)
        rows = store.fetch(0, 100)
        store.close()
    wire = b"".join(body + b"\n" for _, body in rows)  # what the TCP sender writes
    lines = [value for event, value in LineSplitter().feed(wire) if event == "line"]
    assert [decode_envelope(line) for line in lines] == [envelope for envelope, _ in accepted]
