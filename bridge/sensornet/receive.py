"""The receiving side of the envelope wire format: what an endpoint does with the bridge's bytes.

`LineSplitter` splits a TCP byte stream into lines (newline-delimited JSON); `decode_envelope`
checks one line or WebSocket text frame and parses it into an envelope dict (the format is
described in sensornet.envelope), raising `MalformedEnvelope` for anything else. I/O-free, like
sensornet.envelope.
"""

from __future__ import annotations

import re
from typing import Any

from .envelope import ENVELOPE_KEYS, parse_json

DEFAULT_MAX_LINE_BYTES = 1024 * 1024
"""Longest TCP line `LineSplitter` keeps, in bytes, newline excluded (same as websockets' max_size)."""

_RECEIVED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


class MalformedEnvelope(ValueError):
    """A WebSocket frame or TCP line that is not one envelope; `reason` (str) says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_envelope(data: str | bytes) -> dict[str, Any]:
    """Check and parse one received frame or line (without its newline) into an envelope dict.

    Requires a JSON object with the five envelope keys, topic/client_id/kind as non-empty str
    without whitespace (so the endpoint's output line keeps four fields) and received_at in
    the format of envelope.format_timestamp. Extra keys are kept.
    Raises MalformedEnvelope with reason not_utf8, bad_json, not_object, missing_key or bad_value.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEnvelope("not_utf8", "data is not valid UTF-8") from None
    try:
        value = parse_json(data)
    except ValueError as e:
        raise MalformedEnvelope("bad_json", str(e)) from None
    if not isinstance(value, dict):
        raise MalformedEnvelope("not_object", f"expected a JSON object, got {type(value).__name__}")
    missing = [key for key in ENVELOPE_KEYS if key not in value]
    if missing:
        raise MalformedEnvelope("missing_key", f"missing {', '.join(missing)}")
    for key in ("topic", "client_id", "kind"):
        if not isinstance(value[key], str) or not value[key] or any(c.isspace() for c in value[key]):
            raise MalformedEnvelope("bad_value", f"{key} must be a non-empty string without whitespace")
    if not isinstance(value["received_at"], str) or not _RECEIVED_AT.fullmatch(value["received_at"]):
        raise MalformedEnvelope("bad_value", "received_at must look like 2026-11-21T14:30:00.123Z")
    return value



class LineSplitter:
    """Split a TCP byte stream into lines (newline-delimited JSON framing).

    feed(data: bytes) -> list of events, each either ("line", bytes without the newline and
    a trailing b"\\r") or ("too_long", number of bytes discarded). A line longer than
    `max_line_bytes` is discarded up to and including its newline and reported once.
    Empty lines are skipped. Bytes after the last newline wait for the next feed().
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = 0  # bytes dropped so far of an overlong line, 0 when not discarding

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        events: list[tuple[str, Any]] = []
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                self._check_overflow()
                return events
            line = bytes(self._buffer[:newline])
            del self._buffer[:newline + 1]
            if self._discarding:
                events.append(("too_long", self._discarding + len(line)))
                self._discarding = 0
            elif len(line) > self.max_line_bytes:
                events.append(("too_long", len(line)))
            else:
                line = line.removesuffix(b"\r")
                if line.strip():
                    events.append(("line", line))

    def _check_overflow(self) -> None:
        if len(self._buffer) > self.max_line_bytes or self._discarding:
            self._discarding += len(self._buffer)
            self._buffer.clear()
