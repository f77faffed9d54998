"""Matrix item 10: Hypothesis fuzzing of the public publishing API."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.common import FAST, Ledger, drained, subscriber
from fieldmq import Client, PublishHandle, StoreFull
from fieldmq.testing import MosquittoBroker

DOCUMENTED = (ValueError, TypeError, StoreFull)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times out of four, else ``other``: most calls get far enough to send."""
    return st.integers(0, 3).flatmap(lambda k: other if k == 0 else valid)


anything = st.one_of(st.integers(-3, 12), st.booleans(), st.none(), st.text(max_size=3),
                     st.floats(allow_nan=True))
topics = mostly(
    st.text(alphabet=st.sampled_from("ab/ \u00e9\U0001f600.-_"), min_size=1, max_size=30),
    st.one_of(st.text(max_size=40), st.text(alphabet=st.sampled_from("a/+#$\x00"), max_size=8),
              st.just("x" * 70000), st.integers(), st.none(), st.binary(max_size=8)),
)
payloads = mostly(
    st.one_of(st.binary(max_size=2048), st.text(max_size=200), st.none(),
              st.builds(bytearray, st.binary(max_size=64)),
              st.builds(memoryview, st.binary(max_size=64)),
              st.integers(60_000, 300_000).map(lambda n: b"z" * n)),
    st.one_of(st.integers(), st.floats(), st.lists(st.integers(), max_size=3), st.just({})),
)


def test_fuzzed_publish_raises_only_documented_errors(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    """Random topics, payloads, qos, priorities: only documented errors; accepted ones
    arrive, except those whose (fuzzed, often sub-second) TTL ran out first, which their
    handle reports as expired and the stats count."""
    ledger = Ledger()
    sub = subscriber(mosquitto.url, "#", "fz-sub", ledger)
    accepted: dict[str, tuple[bytes, PublishHandle, float | None]] = {}
    outcomes: Counter[str] = Counter()
    try:
        with Client(client_id="fz-pub", brokers=[mosquitto.url], store=tmp_path / "fz.db",
                    backoff=FAST) as pub:

            @settings(max_examples=300, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(topic=topics, payload=payloads,
                   qos=mostly(st.sampled_from((0, 1, 2)), anything),
                   priority=mostly(st.integers(1, 10), anything),
                   ttl=mostly(st.one_of(st.none(), st.floats(1, 1e6)), anything),
                   retain=st.booleans())
            def check(topic: Any, payload: Any, qos: Any, priority: Any, ttl: Any,
                      retain: bool) -> None:
                try:
                    h = pub.publish(topic, payload, qos=qos, priority=priority, ttl=ttl,
                                    retain=retain)
                except DOCUMENTED as exc:
                    outcomes[type(exc).__name__] += 1
                    return
                outcomes["accepted"] += 1
                data = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
                if qos > 0 and not topic.startswith("$"):
                    accepted[h.message_id] = (data, h, ttl)

            started = time.monotonic()
            check()
            last = pub.publish(f"{topic}/after", b"still works", qos=1)
            last.wait(30)
            stats = drained(pub)
            run = time.monotonic() - started
            assert pub.dead_letters() == [], pub.dead_letters()
        expired = {i for i, (_, h, _) in accepted.items() if h.status == "expired"}
        assert set(stats["dropped"]) <= {"expired"}, stats["dropped"]
        assert stats["dropped"].get("expired", 0) >= len(expired)
        # only a TTL shorter than the run can have run out
        assert all((ttl := accepted[i][2]) is not None and ttl < run for i in expired)
        want = {last.message_id, *accepted} - expired
        missing = ledger.wait_all(want, 60)
        assert missing == set(), sorted(
            (i, accepted[i][1].status, accepted[i][2]) for i in missing if i in accepted)
        assert all(ledger.payloads[i] == data for i, (data, _, _) in accepted.items()
                   if i not in expired)
        print(f"chaos[10] examples=300 outcomes={dict(outcomes)} "
              f"accepted_qos12={len(accepted)} expired={len(expired)} "
              f"dropped={stats['dropped']} delivered_after=yes")
    finally:
        sub.close()


@pytest.mark.parametrize("bad", ["a\x01b", "a\x1fb", "a\x7fb", "a\x9ab", "a\ufdd0", "a\uffff",
                                 "a\U0001fffe"])
def test_topics_brokers_refuse_are_rejected_at_publish(tmp_path: Path, bad: str) -> None:
    """Control characters and Unicode non-characters in a topic raise ValueError at publish()."""
    with Client(client_id="fz-bad", brokers=["mqtt://127.0.0.1:9"], store=tmp_path / "b.db",
                backoff=FAST) as c:
        with pytest.raises(ValueError, match="U\\+"):
            c.publish(bad, b"x")
        with pytest.raises(ValueError, match="item 0"):
            c.publish_many([(bad, b"x")])
        assert c.stats()["queued"] == 0
        c.publish("a/\u00e9/\U0001f600", b"fine")  # other non-ASCII is fine
        assert c.stats()["queued"] == 1
