"""robmqtt compatibility: signature, Config, statistics keys, bad input, health check
and taking over a database robmqtt left behind."""

from __future__ import annotations

import inspect
import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from fieldmq.compat.robmqtt import Config, ProductionMQTTClient
from fieldmq.testing import MosquittoBroker, free_port
from helpers import Collector, wait_until

RobFactory = Callable[..., ProductionMQTTClient]
SubscriberFactory = Callable[[str, Collector, str], ProductionMQTTClient]

# robmqtt 1.0's ProductionMQTTClient.__init__ parameters, in order, with defaults.
ROBMQTT_PARAMS = [
    ("client_id", inspect.Parameter.empty), ("broker_host", "localhost"),
    ("broker_port", 1883), ("max_queue_size", 1000), ("db_path", "./mqtt_client.db"),
    ("min_backoff", 1), ("max_backoff", 60), ("log_dir", "./logs"), ("log_level", "INFO"),
    ("use_tls", False), ("ca_certs", None), ("certfile", None), ("keyfile", None),
    ("username", None), ("password", None), ("enable_health_check", False),
    ("health_check_port", 8080),
]


def test_constructor_and_methods_match_robmqtt() -> None:
    """The positional parameters, defaults and public methods are robmqtt 1.0's."""
    params = list(inspect.signature(ProductionMQTTClient.__init__).parameters.values())[1:]
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ROBMQTT_PARAMS
    assert all(p.kind is p.KEYWORD_ONLY for p in params[len(ROBMQTT_PARAMS):])
    for name in ("connect", "start", "stop", "publish", "subscribe", "unsubscribe",
                 "get_statistics", "from_config"):
        assert callable(getattr(ProductionMQTTClient, name)), name
    pub = [p.name for p in inspect.signature(ProductionMQTTClient.publish).parameters.values()]
    assert pub[:6] == ["self", "topic", "payload", "qos", "retain", "priority"]


def test_statistics_keys(rob: RobFactory) -> None:
    """get_statistics() has robmqtt 1.0's keys and the fleet simulator's."""
    client = rob("keys")
    stats = client.get_statistics()
    robmqtt_keys = {"connected", "current_backoff_seconds", "offline_queue",
                    "inflight_messages", "tls_enabled", "active_subscriptions"}
    simulator_keys = {"offline_queue_size", "inflight_count", "is_connected", "reconnect_count"}
    assert robmqtt_keys | simulator_keys <= set(stats)
    assert set(stats["offline_queue"]) == {
        "total_messages", "by_priority", "oldest_message_age_seconds", "capacity_used_percent"}
    assert stats["tls_enabled"] is False and stats["reconnect_count"] == 0
    json.dumps(stats)  # the health endpoint serves it as JSON


def test_bad_input_raises_and_stores_nothing(rob: RobFactory, topic: str) -> None:
    """Wildcard topics, bad QoS, priorities outside 1-10 and odd payloads raise at the call."""
    client = rob("bad")
    for kwargs in ({"topic": f"{topic}/+"}, {"topic": ""}, {"qos": 3}, {"priority": 0},
                   {"priority": 11}):
        args = {"topic": f"{topic}/ok", "payload": b"x"} | kwargs
        with pytest.raises(ValueError):
            client.publish(**args)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.publish(f"{topic}/ok", 23.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.subscribe(f"{topic}/#/x", lambda t, p, q, r: None)
    stats = client.fieldmq_client.stats()
    assert stats["published"] == 0 and stats["queued"] == 0


def test_stop_is_terminal_and_idempotent(rob: RobFactory, topic: str) -> None:
    """After stop() the client refuses work with RuntimeError; a second stop() is a no-op."""
    client = rob("stopped")
    client.stop()
    client.stop()
    assert client.is_connected is False
    with pytest.raises(RuntimeError):
        client.publish(f"{topic}/x", b"late")


def test_constructor_rejects_bad_settings(tmp_path: Path) -> None:
    """Bad ports, queue sizes, log levels and backoffs raise before anything is opened."""
    db = str(tmp_path / "never.db")
    for kwargs in ({"broker_port": 0}, {"max_queue_size": 0}, {"log_level": "LOUD"},
                   {"min_backoff": 0}, {"min_backoff": 10, "max_backoff": 1}):
        with pytest.raises(ValueError):
            ProductionMQTTClient("bad", db_path=db, **kwargs)  # type: ignore[arg-type]
    assert not Path(db).exists() or Path(db).stat().st_size == 0


def test_config_sources_validation_and_from_config(
    mosquitto: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Config reads JSON, key=value files and MQTT_ variables, validates, redacts, and
    from_config() builds a working client."""
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"client_id": "cfg", "broker_port": mosquitto.port,
                                     "password": "s3cret"}))
    cfg = Config.from_file(json_file)
    assert cfg.get("broker_port") == mosquitto.port and cfg.get("max_queue_size") == 1000
    assert "s3cret" not in str(cfg)
    kv = tmp_path / "c.conf"
    kv.write_text(
        "# comment\nclient_id=kv\nuse_tls=false\nmax_backoff=7\nqueue_drain_interval=0.5\n"
    )
    kv_cfg = Config.from_file(kv)
    assert (kv_cfg.get("use_tls"), kv_cfg.get("max_backoff"),
            kv_cfg.get("queue_drain_interval")) == (False, 7, 0.5)
    monkeypatch.setenv("MQTT_CLIENT_ID", "env")
    monkeypatch.setenv("MQTT_BROKER_PORT", "1884")
    monkeypatch.setenv("MQTT_USE_TLS", "yes")
    env_cfg = Config.from_env()
    assert (env_cfg.get("client_id"), env_cfg.get("broker_port"), env_cfg.get("use_tls")) == (
        "env", 1884, True)
    with pytest.raises(ValueError):
        Config({})
    with pytest.raises(ValueError):
        cfg.set("broker_port", 70000)
    assert cfg.get("broker_port") == mosquitto.port
    with pytest.raises(FileNotFoundError):
        Config.from_file(tmp_path / "missing.json")
    saved = tmp_path / "saved.json"
    cfg.save_to_file(saved)
    assert Config.from_file(saved).to_dict() == cfg.to_dict()
    cfg.set("broker_host", mosquitto.host)
    cfg.set("db_path", str(tmp_path / "cfg.db"))
    client = ProductionMQTTClient.from_config(cfg)
    try:
        client.connect()
        client.start()
        assert wait_until(lambda: client.is_connected, 10)
    finally:
        client.stop()


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_health_check_endpoint(mosquitto: MosquittoBroker, rob: RobFactory) -> None:
    """GET /health: 200 healthy while connected, 503 unhealthy while the broker is down."""
    port = free_port()
    client = rob("health", enable_health_check=True, health_check_port=port,
                 health_check_host="127.0.0.1")
    url = f"http://127.0.0.1:{port}/health"
    assert wait_until(lambda: client.is_connected, 10)
    code, body = _get(url)
    assert (code, body["status"], body["client_id"]) == (200, "healthy", "health")
    assert isinstance(body["statistics"], dict) and body["statistics"]["is_connected"] is True
    mosquitto.stop()
    assert wait_until(lambda: not client.is_connected, 10)
    code, body = _get(url)
    assert (code, body["status"]) == (503, "unhealthy")


def _robmqtt_db(path: Path) -> None:
    """A database laid out as robmqtt 1.0 leaves it, with unsent messages."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("""CREATE TABLE offline_queue (id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
            retain INTEGER NOT NULL, priority INTEGER DEFAULT 1, timestamp TEXT NOT NULL)""")
        db.execute("""CREATE TABLE inflight_messages (packet_id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
            retain INTEGER NOT NULL, timestamp INTEGER NOT NULL)""")
        rows = [("low", 1, "2024-01-01T00:00:01"), ("high", 8, "2024-01-01T00:00:02"),
                ("low2", 1, "2024-01-01T00:00:03")]
        for payload, prio, ts in rows:
            db.execute("INSERT INTO offline_queue (topic, payload, qos, retain, priority, "
                       "timestamp) VALUES (?, ?, 1, 0, ?, ?)",
                       ("legacy/t", payload.encode(), prio, ts))
        db.execute("INSERT INTO offline_queue (topic, payload, qos, retain, priority, "
                   "timestamp) VALUES ('legacy/+', x'00', 1, 0, 5, '2024-01-01T00:00:04')")
        db.execute("INSERT INTO inflight_messages VALUES (7, 'legacy/t', ?, 1, 0, 1)",
                   (b"inflight",))


def test_takes_over_a_robmqtt_database(
    rob: RobFactory, rob_subscriber: SubscriberFactory, tmp_path: Path, collector: Collector,
) -> None:
    """Messages robmqtt left in db_path are sent (inflight first, then by priority) and
    removed from its tables; a row with an invalid topic is left there, not lost."""
    db = tmp_path / "legacy.db"
    _robmqtt_db(db)
    rob_subscriber("legacy/#", collector, "legacy-sub")
    client = rob("legacy", db_path=str(db))
    assert client.imported_from_robmqtt == 4
    assert collector.wait_for(lambda ms: sum(m.topic == "legacy/t" for m in ms) >= 4)
    got = [m.payload for m in collector.messages if m.topic == "legacy/t"]
    assert got == [b"inflight", b"high", b"low", b"low2"]
    with closing(sqlite3.connect(db)) as raw:
        assert raw.execute("SELECT COUNT(*) FROM inflight_messages").fetchone() == (0,)
        assert raw.execute("SELECT topic FROM offline_queue").fetchall() == [("legacy/+",)]
    client.stop()
    again = rob("legacy", db_path=str(db))
    assert again.imported_from_robmqtt == 0
    assert wait_until(lambda: again.get_statistics()["offline_queue_size"] == 0, 10)
