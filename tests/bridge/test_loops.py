"""Loop-prevention decisions (pure)."""

from __future__ import annotations

from fieldmq.bridge.loops import extend_path, is_loop, loop_risks, read_path, valid_name


def test_read_path_finds_the_property_among_others() -> None:
    """The path is read from the fmq-path user property; absent means empty."""
    assert read_path([("k", "v"), ("fmq-path", "site,cloud")]) == ("site", "cloud")
    assert read_path([("k", "v")]) == ()
    assert read_path([]) == ()


def test_extend_path_adds_source_once_and_target() -> None:
    """A fresh message gets source and target; a forwarded one gets the target appended."""
    assert extend_path((), "site", "cloud") == "site,cloud"
    assert extend_path(("edge", "site"), "site", "cloud") == "edge,site,cloud"
    assert extend_path(("edge",), "site", "cloud") == "edge,site,cloud"


def test_is_loop_when_target_already_on_path() -> None:
    """A message never goes back to a broker it has been on."""
    assert is_loop(("site", "cloud"), "site")
    assert not is_loop(("edge", "site"), "cloud")
    assert not is_loop((), "cloud")


def test_broker_names_without_commas() -> None:
    """Names are non-empty, comma-free and unpadded."""
    assert valid_name("site-a:1883")
    assert not valid_name("")
    assert not valid_name("a,b")
    assert not valid_name(" a")


def _hops(bridges: list[tuple[str, str]], origin: str, limit: int = 20) -> list[str]:
    """Brokers a message visits when every bridge (src, dst) forwards everything."""
    visits = [origin]
    frontier = [(origin, ())]
    while frontier and len(visits) < limit:
        broker, path = frontier.pop()
        for src, dst in bridges:
            if src == broker and not is_loop(path, dst):
                new = tuple(extend_path(path, src, dst).split(","))
                visits.append(dst)
                frontier.append((dst, new))
    return visits


def test_bridge_pair_in_both_directions_neither_loops_nor_echoes() -> None:
    """site->cloud and cloud->site forward a message exactly once, never back."""
    assert _hops([("site", "cloud"), ("cloud", "site")], "site") == ["site", "cloud"]
    assert _hops([("site", "cloud"), ("cloud", "site")], "cloud") == ["cloud", "site"]


def test_chain_of_bridges_reaches_the_end_and_a_ring_stops() -> None:
    """edge->site->cloud delivers to every broker once; a ring of three does not loop."""
    assert _hops([("edge", "site"), ("site", "cloud")], "edge") == ["edge", "site", "cloud"]
    ring = [("a", "b"), ("b", "c"), ("c", "a")]
    assert _hops(ring, "a") == ["a", "b", "c"]


def test_loop_risks_find_cyclic_topic_spaces() -> None:
    """Forward target matched by a reverse source whose target feeds the forward source."""
    fwd = [("plant/#", "site/plant/#"), ("alarms/#", "site/alarms/#")]
    rev = [("site/plant/#", "plant/#"), ("cmd/#", "plant/cmd/#"), ("site/+/x", "plant/echo")]
    assert loop_risks(fwd, rev) == [(0, 0), (0, 2)]
    assert loop_risks([("a/#", "up/a/#")], [("down/#", "a/cmd/#")]) == []
