"""The decisions that find a message the broker closes the connection on (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from fieldmq.client.poison import PoisonDetector


@dataclass
class M:
    seq: int


def test_lone_message_lost_three_times_is_the_culprit() -> None:
    """The only message in flight on three ack-less losses in a row is returned."""
    d: PoisonDetector[M] = PoisonDetector()
    assert d.connection_lost(0, [M(7)]) is None
    assert d.connection_lost(0, [M(7)]) is None
    assert d.connection_lost(0, [M(7)]) == M(7)
    assert d.connection_lost(0, [M(7)]) is None  # counting starts again


def test_an_ack_or_another_message_clears_the_suspicion() -> None:
    """An acknowledgement on the connection, or a different lone message, resets the count."""
    d: PoisonDetector[M] = PoisonDetector()
    d.connection_lost(0, [M(1)])
    d.connection_lost(0, [M(1)])
    assert d.connection_lost(1, [M(1)]) is None
    d.connection_lost(0, [M(1)])
    d.connection_lost(0, [M(2)])
    assert d.connection_lost(0, [M(2)]) is None
    assert d.connection_lost(0, [M(2)]) == M(2)


def test_several_in_flight_make_the_window_start_at_one() -> None:
    """A loss with several messages in flight and no ack opens the window one ack at a
    time until as many were acknowledged."""
    d: PoisonDetector[M] = PoisonDetector()
    assert d.window(1000, 0) == 1000
    assert d.connection_lost(0, [M(1), M(2), M(3)]) is None
    assert [d.window(1000, acks) for acks in (0, 1, 2)] == [1, 2, 3]
    for _ in range(3):
        d.acked()
    assert d.window(1000, 0) == 1000
