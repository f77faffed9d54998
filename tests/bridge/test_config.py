"""Parsing and checking the bridge configuration (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fieldmq import ConfigError
from fieldmq.bridge import load_config, parse_config
from fieldmq.bridge.mapping import TopicRewrite

URLS = ("mqtt://127.0.0.1:1883", "mqtts://cloud.example:8883")


def _cfg(**table: Any) -> Any:
    table.setdefault("forward", [{"from": "a/#", "to": "up/a/#"}])
    return parse_config(table, source="b.toml").with_urls(*URLS)


def test_full_configuration_is_parsed(tmp_path: Path) -> None:
    """Every documented key lands in the right field."""
    path = tmp_path / "bridge.toml"
    path.write_text("""
id = "gw-07"
state_dir = "/tmp/x"
heartbeat_interval = 10
[local]
name = "site-a"
receive_maximum = 50
[upstream]
name = "cloud"
protocol = 5
rate_limit = 20000
burst = 4000
durability = "sync"
max_messages = 1000
[http]
port = 9110
[[forward]]
name = "telemetry"
from = "plant/+/data/#"
to = "sites/gw-07/plant/+/data/#"
priority = 3
qos = 1
ttl = 3600
[[forward]]
name = "temps"
from = "plant/+/temp"
to = "sites/gw-07/plant/+/temp1m"
rollup = { interval = 60, field = "celsius" }
[[reverse]]
name = "commands"
from = "sites/gw-07/cmd/#"
to = "plant/cmd/#"
priority = 9
""")
    cfg = load_config(path, local="mqtt://127.0.0.1:1883", upstream="mqtts://up:8883")
    assert cfg.id == "gw-07" and cfg.http_port == 9110 and cfg.heartbeat_interval == 10
    assert cfg.local.url == "mqtt://127.0.0.1:1883" and cfg.upstream.url == "mqtts://up:8883"
    assert cfg.local.broker_name == "site-a" and cfg.local.receive_maximum == 50
    assert cfg.rate_limit is not None and cfg.rate_limit.bytes_per_second == 20000
    assert cfg.rate_limit.capacity == 4000
    assert cfg.upstream.durability == "sync" and cfg.upstream.max_messages == 1000
    tel, temps = cfg.forward
    assert (tel.priority, tel.ttl, tel.rewrite) == (3, 3600, TopicRewrite(tel.source, tel.target))
    assert temps.rollup is not None and temps.rollup.field == "celsius"
    assert cfg.reverse[0].priority == 9 and cfg.reverse[0].direction == "reverse"


def test_defaults() -> None:
    """Names default to host:port, mappings to forward-N, 'to' to 'from'."""
    cfg = _cfg(forward=[{"from": "a/#"}])
    assert cfg.local.broker_name == "127.0.0.1:1883"
    assert cfg.upstream.broker_name == "cloud.example:8883"
    m = cfg.forward[0]
    assert (m.name, m.target, m.qos, m.priority, m.retain) == ("forward-1", "a/#", 1, 5, False)
    assert cfg.id.startswith("bridge-") and cfg.rate_limit is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"forward": [{"name": "tel", "from": "plant/+/data/#", "to": "up/data/#"}]},
         "mapping 'tel' (forward[0]): target 'up/data/#' must have the same wildcards"),
        ({"forward": [{"name": "x", "from": "a/b#"}]}, "mapping 'x' (forward[0]): invalid topic"),
        ({"forward": [{"name": "x", "to": "a"}]}, "mapping 'x' (forward[0]): 'from' is missing"),
        ({"forward": [{"from": "a", "prio": 3}]}, "unknown key 'prio'; did you mean 'priority'"),
        ({"forward": [{"from": "a", "priority": 11}]}, "priority must be an integer from 1"),
        ({"forward": [{"from": "a", "qos": 3}]}, "qos must be 0, 1 or 2"),
        ({"forward": [{"from": "a", "rollup": {"interval": 0}}]}, "positive number of seconds"),
        ({"forward": [{"from": "a", "rollup": {"field": "v"}}]}, "rollup needs 'interval'"),
        ({"forward": [{"from": "a", "rollup": 5}]}, "'rollup' must be a table"),
        ({"forward": [{"from": "a"}], "reverse": [{"from": "b", "rollup": {"interval": 1}}]},
         "mapping 'reverse-1' (reverse[0]): rollup is only available on forward"),
        ({"forward": [{"name": "d", "from": "a"}, {"name": "d", "from": "b"}]},
         "mapping 'd' is defined twice"),
        ({"forward": []}, "no mappings"),
        ({"forward": {"from": "a"}}, "forward must be an array of tables"),
        ({"upstream": {"rate_limit": -1}}, "upstream.rate_limit: RateLimit.bytes_per_second"),
        ({"upstream": {"burst": 10}}, "upstream.burst needs upstream.rate_limit"),
        ({"upstream": {"protocol": 3}}, "upstream.protocol = 3: expected 5 or 4"),
        ({"upstream": {"durabilty": "sync"}}, "did you mean 'durability'"),
        ({"local": {"rate_limit": 10}}, "unknown key 'local.rate_limit'; the bandwidth cap"),
        ({"local": {"receive_maximum": 0}}, "local.receive_maximum = 0 is out of range"),
        ({"local": {"name": "a,b"}}, "local.name 'a,b' must be non-empty, without commas"),
        ({"local": {"name": "x"}, "upstream": {"name": "x"}}, "both named 'x'"),
        ({"id": "no spaces"}, "bridge id 'no spaces'"),
        ({"http": {"port": 70000}}, "http.port = 70000"),
        ({"upstream": {"tls": {"ca_file": "/nonexistent/ca.pem"}}}, "CA file not found"),
        ({"bogus": 1}, "unknown key 'bogus'"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_problem(
    table: dict[str, Any], message: str
) -> None:
    """Each mistake raises ConfigError whose message names the mapping or key."""
    with pytest.raises(ConfigError) as info:
        _cfg(**table)
    assert message in str(info.value)
    assert str(info.value).startswith("b.toml: ")


def test_loops_over_mqtt311_are_rejected_and_allowed_over_mqtt5() -> None:
    """Cyclic topic spaces are an error only when a side speaks MQTT 3.1.1."""
    table: dict[str, Any] = {
        "forward": [{"name": "up", "from": "plant/#", "to": "site/plant/#"}],
        "reverse": [{"name": "down", "from": "site/#", "to": "plant/#"}],
    }
    assert _cfg(**table).reverse[0].name == "down"
    with pytest.raises(ConfigError, match=r"forward 'up' .* and reverse 'down' .* disjoint"):
        _cfg(**table, upstream={"protocol": 4})


def test_missing_urls_and_bad_urls_name_the_flag() -> None:
    """Without --from/--to or local.url/upstream.url the error says which is missing."""
    with pytest.raises(ConfigError, match="no local broker; pass --from URL"):
        parse_config({"forward": [{"from": "a"}]}).with_urls(None, URLS[1])
    with pytest.raises(ConfigError, match=r"upstream\.url: broker URL 'http://x'"):
        parse_config({"forward": [{"from": "a"}]}).with_urls(URLS[0], "http://x")


def test_unreadable_and_invalid_toml_files(tmp_path: Path) -> None:
    """A missing file or broken TOML is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[forward]\n")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_config(bad)
