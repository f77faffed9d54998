"""Generated systemd units (checked by systemd-analyze verify) and supervisor configs
(run by a real supervisord)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fieldmq.runtime.supervisor_conf import ProgramSpec, render_program
from fieldmq.runtime.systemd_unit import UnitSpec, quote_exec, render_unit

from .conftest import PROGRAMS, require_tool, wait_for

GOLDEN = Path(__file__).parent / "golden"


def _spec(**kw: object) -> UnitSpec:
    base: dict[str, object] = {
        "app": "meter",
        "exec": ["/usr/bin/python3", "-m", "meter", "--http-port", "9100"],
        "user": "pi",
        "working_directory": "/home/pi/meter",
        "supplementary_groups": ("video",),
    }
    base.update(kw)
    return UnitSpec(**base)  # type: ignore[arg-type]


def _verify(
    tmp_path: Path, text: str, name: str = "meter.service"
) -> subprocess.CompletedProcess[str]:
    # Without systemd-analyze the golden-file test still checks the text.
    tool = require_tool("systemd-analyze", "systemd")
    unit = tmp_path / name
    unit.write_text(text)
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)


def test_unit_matches_golden_file() -> None:
    """The generated unit for a Pi deployment is exactly the reviewed golden text."""
    assert render_unit(_spec()) == (GOLDEN / "meter.service").read_text()


def test_unit_has_the_required_directives() -> None:
    """Type=notify, restart policy, start limits in [Unit], watchdog, user and env file."""
    text = render_unit(_spec(watchdog_sec=20, restart_sec=3, start_limit_burst=4))
    unit_section, service_section = text.split("[Service]")
    assert "StartLimitIntervalSec=300" in unit_section
    assert "StartLimitBurst=4" in unit_section
    for line in ["Type=notify", "Restart=on-failure", "RestartSec=3", "WatchdogSec=20",
                 "User=pi", "WorkingDirectory=/home/pi/meter",
                 "EnvironmentFile=-/etc/fieldmq/meter.env", "StateDirectory=fieldmq/meter",
                 "NoNewPrivileges=yes", "ProtectSystem=strict"]:
        assert line in service_section.splitlines(), line
    assert "Requires=" not in text
    assert "WatchdogSec" not in render_unit(_spec(watchdog_sec=None))


def test_generated_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit with no warning at all."""
    spec = _spec(exec=[sys.executable, "-m", "meter", "--set", "label=50% $HOME"],
                 environment={"EXTRA": 'say "hi" 100%'}, read_write_paths=("/srv/meter",))
    result = _verify(tmp_path, render_unit(spec))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    minimal = render_unit(UnitSpec(app="bnp-mqtt", exec=sys.executable, hardening=False,
                                   watchdog_sec=None))
    result = _verify(tmp_path, minimal, "bnp-mqtt.service")
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check is real: a unit with a bad directive or executable is flagged."""
    text = render_unit(_spec(exec=[sys.executable])).replace(
        "Restart=on-failure", "Restart=sometimes")
    assert "restart specifier" in _verify(tmp_path, text).stderr
    text = render_unit(_spec(exec=["/nonexistent/python"]))
    assert _verify(tmp_path, text).returncode != 0


def test_exec_quoting() -> None:
    """Spaces, quotes, % and $ survive systemd's command-line parsing."""
    assert quote_exec(["/bin/x", "a b", "50%", "$HOME", 'q"t']) == \
        '/bin/x "a b" 50%% $$HOME "q\\"t"'
    assert quote_exec(["/bin/x", ""]) == '/bin/x ""'


def test_unit_spec_validation() -> None:
    """Relative executables, bad names and bad numbers are rejected."""
    with pytest.raises(ValueError, match="absolute path"):
        UnitSpec(app="meter", exec="python -m meter")
    with pytest.raises(ValueError, match="invalid user"):
        _spec(user="pi;rm")
    with pytest.raises(ValueError, match="invalid app"):
        _spec(app="a b")
    with pytest.raises(ValueError, match="watchdog_sec"):
        _spec(watchdog_sec=0.5)
    with pytest.raises(ValueError, match="exec must"):
        _spec(exec=[])
    with pytest.raises(ValueError, match="environment"):
        _spec(environment={"BAD-KEY": "x"})
    assert _spec(exec="/usr/bin/python3 -m 'my app'").exec == ("/usr/bin/python3", "-m", "my app")


def test_supervisor_program_text() -> None:
    """The program section has restart, stop, log rotation and a per-app state dir."""
    text = render_program(ProgramSpec(app="bnp", exec="/srv/bnp/env/bin/python paho_client.py",
                                      user="redmine", directory="/srv/bnp"))
    lines = text.splitlines()
    assert "[program:bnp]" in lines
    for line in ["autorestart=unexpected", "stopsignal=TERM", "stopasgroup=true",
                 "user=redmine", "directory=/srv/bnp", "stdout_logfile=/var/log/fieldmq/bnp.log",
                 "stdout_logfile_maxbytes=10MB"]:
        assert line in lines, line
    assert 'FIELDMQ_STATE_DIR="/var/lib/fieldmq/bnp"' in text
    with pytest.raises(ValueError, match="absolute"):
        ProgramSpec(app="bnp", exec="x", directory="rel")
    with pytest.raises(ValueError, match="both kinds of quotes"):
        ProgramSpec(app="bnp", exec="x", environment={"X": "a'b\"c"})
    assert "X='say \"hi\" now'" in render_program(
        ProgramSpec(app="bnp", exec="x", environment={"X": 'say "hi" now'}))


def test_supervisord_runs_and_stops_the_generated_program(tmp_path: Path) -> None:
    """A real supervisord starts the program with its environment and stops it with SIGTERM."""
    out = tmp_path / "out.json"
    program = render_program(ProgramSpec(
        app="django5-mqtt",
        exec=[sys.executable, str(PROGRAMS / "term_app.py"), str(out)],
        directory=str(tmp_path),
        state_dir=str(tmp_path / "state"),
        log_dir=str(tmp_path),
        environment={"EXTRA": 'quote " and 100%'},
        start_secs=1,
        stop_wait_secs=10,
    ))
    (tmp_path / "django5-mqtt.conf").write_text(program)
    sock = tmp_path / "supervisor.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={sock}\n\n"
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/sd.pid\n"
        "nodaemon=true\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{sock}\n\n"
        f"[include]\nfiles={tmp_path}/django5-mqtt.conf\n"
    )
    bindir = Path(sys.executable).parent
    ctl = [str(bindir / "supervisorctl"), "-c", str(conf)]
    daemon = subprocess.Popen([str(bindir / "supervisord"), "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def status() -> str:
            return subprocess.run([*ctl, "status", "django5-mqtt"], capture_output=True,
                                  text=True, timeout=30).stdout
        wait_for(lambda: "RUNNING" in status(), 30, "the program to be RUNNING")
        record = json.loads(out.read_text())
        assert record["env"]["FIELDMQ_APP"] == "django5-mqtt"
        assert record["env"]["FIELDMQ_STATE_DIR"] == str(tmp_path / "state")
        assert record["env"]["EXTRA"] == 'quote " and 100%'
        assert record["cwd"] == str(tmp_path)
        started = time.monotonic()
        subprocess.run([*ctl, "stop", "django5-mqtt"], capture_output=True, timeout=30,
                       check=True)
        assert (tmp_path / "out.json.stopped").read_text() == "SIGTERM"
        assert time.monotonic() - started < 10
        assert "started" in (tmp_path / "django5-mqtt.log").read_text()
    finally:
        subprocess.run([*ctl, "shutdown"], capture_output=True, timeout=30)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
