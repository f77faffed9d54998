"""Service configuration: precedence of defaults, TOML, environment and flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fieldmq.errors import ConfigError
from fieldmq.runtime.config import (
    KEYS,
    ServiceConfig,
    add_arguments,
    env_name,
    flags_from_args,
    load_config,
    parse_argv,
)
from fieldmq.runtime.health import HealthThresholds


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meter.toml"
    path.write_text(text)
    return path


def test_defaults_only() -> None:
    """With nothing configured, every key has its documented default."""
    cfg = load_config("meter", env={})
    assert cfg.app == "meter"
    assert cfg.brokers == ("mqtt://127.0.0.1:1883",)
    assert cfg.http.port is None and cfg.http.host == "127.0.0.1"
    assert cfg.health == HealthThresholds()
    assert cfg.source_of("http.port") == "default"
    assert cfg.topic_group == "meter"


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the file, which beats the default."""
    path = _toml(tmp_path, 'group = "plant"\nheartbeat_interval = 5\n[http]\nport = 9000\n'
                           'host = "0.0.0.0"\n')
    env = {"FIELDMQ_HTTP_PORT": "9001", "FIELDMQ_HEARTBEAT_INTERVAL": "7"}
    flags = {"http.port": ("9002", "flag --http-port")}
    cfg = load_config("meter", config_file=path, env=env, flags=flags)
    assert cfg.http.port == 9002 and cfg.source_of("http.port") == "flag --http-port"
    assert cfg.heartbeat_interval == 7.0
    assert cfg.source_of("heartbeat_interval") == "env FIELDMQ_HEARTBEAT_INTERVAL"
    assert cfg.group == "plant" and cfg.source_of("group") == f"file {path}"
    assert cfg.http.host == "0.0.0.0"
    assert cfg.drain_timeout == KEYS["drain_timeout"].default


def test_config_file_from_env_variable(tmp_path: Path) -> None:
    """FIELDMQ_CONFIG names the TOML file when --config is not given."""
    path = _toml(tmp_path, 'app = "bnp"\nbrokers = ["mqtt://a:1883", "mqtt://b:1884"]\n')
    cfg = load_config(env={"FIELDMQ_CONFIG": str(path)})
    assert cfg.app == "bnp"
    assert cfg.brokers == ("mqtt://a:1883", "mqtt://b:1884")


def test_invalid_env_value_names_key_and_source() -> None:
    """A bad environment value raises ConfigError carrying the key and the variable."""
    with pytest.raises(ConfigError) as info:
        load_config("meter", env={"FIELDMQ_HTTP_PORT": "eighty"})
    assert info.value.key == "http.port"
    assert info.value.source == "env FIELDMQ_HTTP_PORT"
    assert "expected an integer" in str(info.value)


def test_invalid_file_value_names_key_and_file(tmp_path: Path) -> None:
    """A wrongly typed value in TOML names the key and the file."""
    path = _toml(tmp_path, '[health]\ndisk_degraded_free_percent = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_config("meter", config_file=path, env={})
    assert info.value.key == "health.disk_degraded_free_percent"
    assert info.value.source == f"file {path}"


def test_unknown_file_key_is_an_error_with_hint(tmp_path: Path) -> None:
    """A typo in the file is reported, with the nearest known key."""
    path = _toml(tmp_path, "[http]\nprot = 1\n[metrics]\nport = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'http\.prot'"):
        load_config("meter", config_file=path, env={})
    path = _toml(tmp_path, "[metrics]\nport = 3\n")
    with pytest.raises(ConfigError, match=r"did you mean 'http\.port'"):
        load_config("meter", config_file=path, env={})


def test_extra_table_is_left_to_the_application(tmp_path: Path) -> None:
    """The [extra] table is passed through untouched."""
    path = _toml(tmp_path, "[extra]\nsensor = \"bme280\"\nrate = 2\n")
    cfg = load_config("meter", config_file=path, env={})
    assert cfg.extra == {"sensor": "bme280", "rate": 2}


def test_unknown_fieldmq_env_vars_are_ignored() -> None:
    """Other FIELDMQ_* variables (used by scripts) do not break loading."""
    cfg = load_config("meter", env={"FIELDMQ_EXTRAS": "dev"})
    assert cfg.app == "meter"


def test_missing_and_broken_file(tmp_path: Path) -> None:
    """A missing or invalid TOML file is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("meter", config_file=tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config("meter", config_file=_toml(tmp_path, "app = ["), env={})
    assert info.value.key == "config"


def test_cross_field_health_error(tmp_path: Path) -> None:
    """Thresholds in the wrong order are reported with the key and its source."""
    env = {"FIELDMQ_HEALTH_OFFLINE_DEGRADED_AFTER": "900"}
    with pytest.raises(ConfigError, match="must not exceed") as info:
        load_config("meter", env=env)
    assert info.value.key == "health.offline_degraded_after"
    assert info.value.source == "env FIELDMQ_HEALTH_OFFLINE_DEGRADED_AFTER"


def test_argparse_flags_and_set() -> None:
    """--broker repeats, --set reaches any key, and both carry the flag as source."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([
        "--app", "django5", "--broker", "mqtt://a:1", "--broker", "mqtt://b:2",
        "--set", "health.temperature_degraded_c=70", "--set", "log.json=yes",
    ])
    cfg = load_config(env={}, flags=flags_from_args(args))
    assert cfg.app == "django5"
    assert cfg.brokers == ("mqtt://a:1", "mqtt://b:2")
    assert cfg.source_of("brokers") == "flag --broker"
    assert cfg.health.temperature_degraded_c == 70.0
    assert cfg.log_json is True
    assert cfg.source_of("log.json") == "flag --set log.json"


def test_set_unknown_key_and_malformed() -> None:
    """--set with an unknown key or without '=' is a ConfigError."""
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        parse_argv("meter", ["--set", "nope=1"], env={})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_argv("meter", ["--set", "nope"], env={})


def test_no_app_anywhere() -> None:
    """Without an app name the error says how to give one."""
    with pytest.raises(ConfigError, match="--app NAME") as info:
        load_config(env={})
    assert info.value.key == "app"


def test_values_are_checked() -> None:
    """Bools, minimums, choices, lists and broker URLs are validated."""
    cases = {
        "FIELDMQ_LOG_JSON": ("maybe", "true or false"),
        "FIELDMQ_KEEPALIVE": ("0", ">= 1"),
        "FIELDMQ_PROTOCOL": ("3", "one of 4, 5"),
        "FIELDMQ_LOG_LEVEL": ("LOUD", "one of"),
        "FIELDMQ_DRAIN_TIMEOUT": ("nan", "finite"),
    }
    for var, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            load_config("meter", env={var: value})
    with pytest.raises(ConfigError, match="no scheme") as info:
        load_config("meter", env={"FIELDMQ_BROKERS": "localhost:1883"})
    assert info.value.key == "brokers" and info.value.source == "env FIELDMQ_BROKERS"


def test_empty_env_clears_optional_value(tmp_path: Path) -> None:
    """An empty variable unsets an optional key that the file set."""
    path = _toml(tmp_path, "[http]\nport = 9000\n")
    cfg = load_config("meter", config_file=path, env={"FIELDMQ_HTTP_PORT": ""})
    assert cfg.http.port is None


def test_password_never_shown() -> None:
    """The password is kept but absent from repr and from error messages."""
    cfg = load_config("meter", env={"FIELDMQ_PASSWORD": "s3cret"})
    assert cfg.password == "s3cret"
    assert "s3cret" not in repr(cfg)
    from fieldmq.runtime import config as config_module

    with pytest.raises(ConfigError) as info:
        config_module._convert("password", KEYS["password"], 42, "file x")
    assert "42" not in str(info.value)


def test_direct_construction_is_validated() -> None:
    """ServiceConfig built in Python checks app, worker, brokers and topic levels."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig(app="bad/app")
    assert info.value.key == "app" and info.value.source == "argument"
    with pytest.raises(ConfigError, match="one topic level"):
        ServiceConfig(app="a", group="x/y")
    with pytest.raises(ConfigError):
        ServiceConfig(app="a", brokers=())
    assert ServiceConfig(app="a", brokers="mqtt://h:1").brokers == ("mqtt://h:1",)


def test_identity_derivation() -> None:
    """client id is <app>-<node>[-<worker>] unless given; group defaults to the app."""
    cfg = ServiceConfig(app="meter", node="pi-07.lan", worker="2")
    assert cfg.resolved_client_id == "meter-pi-07-2"
    assert ServiceConfig(app="m", client_id="fixed").resolved_client_id == "fixed"
    assert ServiceConfig(app="m", group="plant").topic_group == "plant"


def test_tls_files_checked(tmp_path: Path) -> None:
    """A missing TLS file is a ConfigError naming the tls key."""
    cfg = load_config("meter", env={"FIELDMQ_TLS_CA_FILE": str(tmp_path / "ca.pem")})
    with pytest.raises(ConfigError) as info:
        cfg.tls()
    assert info.value.key == "tls.ca_file"
    assert ServiceConfig(app="m").tls() is None


def test_env_names() -> None:
    """Keys map to FIELDMQ_ variables with dots as underscores."""
    assert env_name("http.port") == "FIELDMQ_HTTP_PORT"
    assert env_name("brokers") == "FIELDMQ_BROKERS"
