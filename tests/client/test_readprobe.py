"""ReadProbe: the network loop's "is more already waiting?" check between packet reads."""

from __future__ import annotations

import socket

from fieldmq.client.wire import ReadProbe


def test_read_probe_sees_waiting_bytes_and_nothing_else() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        probe = ReadProbe(a)
        assert probe() is False  # nothing sent yet: the loop goes back to poll
        b.sendall(b"\x30\x05hello")
        assert probe() is True
        assert a.recv(64) == b"\x30\x05hello"
        assert probe() is False  # all read
