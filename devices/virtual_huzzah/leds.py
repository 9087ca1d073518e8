"""Read LED blink codes off a GPIO timeline.

The firmware's code (README, "LED error codes"): while a fault lasts, N short blinks, about
200 ms on and 200 ms off, then at least 1.5 s dark, repeated. A timeline is a list of
(time in s, level) changes of one pin, oldest first.
"""

from __future__ import annotations

BLINK_MAX_S = 0.4  # a blink is lit for at most this long (nominal 0.2 s)
GAP_MIN_S = 1.0  # dark for at least this long ends a group (nominal pause 1.5 s or more)


def decode_blink_codes(timeline: list[tuple[float, int]], active_low: bool = True,
                       blink_max_s: float = BLINK_MAX_S, gap_min_s: float = GAP_MIN_S) -> list[int]:
    """The blink counts (ints) of the complete groups in `timeline`, oldest first.

    A group is complete when a dark gap of at least gap_min_s stands both before and after it,
    so a group cut by the window's start or end is not reported. A pulse lit longer than
    blink_max_s is no blink: it breaks off any group around it.
    """
    lit = 0 if active_low else 1
    pulses = []  # (on, off) times of lit intervals
    on = None
    for t, level in timeline:
        if level == lit and on is None:
            on = t
        elif level != lit and on is not None:
            pulses.append((on, t))
            on = None
    codes: list[int] = []
    group = 0
    opened = False  # the current group began after a long enough gap
    previous_off = None
    for start, end in pulses:
        if previous_off is not None and start - previous_off >= gap_min_s:
            if opened and group:
                codes.append(group)
            group, opened = 0, True
        if end - start > blink_max_s:
            group, opened = 0, False
        else:
            group += 1
        previous_off = end
    return codes
