"""``fieldmq simulate`` / ``fieldmq audit``: bad input gets a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldmq.cli import main
from fieldmq.sim.acceptlog import AcceptLog
from fieldmq.sim.receiver import ReceivedLog


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--mix", "sensor=10,toaster=2"], "argument --mix: --mix: unknown profile 'toaster'"),
    (["--mix", "sensor10"], "needs PROFILE=COUNT"),
    (["--scenario", "outtage"], "unknown scenario 'outtage'; built-in scenarios: flaky-4g"),
    (["--duration", "ten minutes"], "argument --duration: bad duration 'ten minutes'"),
    (["--duration", "0s"], "must be > 0"),
    (["--devices", "0"], "argument --devices: must be >= 1"),
    (["--processes", "two"], "expected a whole number"),
    (["--time-scale", "-1"], "must be a positive number"),
    (["--speed", "0"], "argument --speed: must be a positive number"),
    (["--warmup", "soon"], "argument --warmup: bad duration 'soon'"),
    (["--broker-port", "70000"], "a TCP port is 1-65535"),
])
def test_simulate_bad_input(argv: list[str], message: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """Bad simulate options exit 2 with the option and the problem named."""
    assert message in _fails(["simulate", *argv], capsys)


def test_simulate_refuses_external_broker_for_broker_scenarios(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario that stops the broker cannot run against someone else's broker."""
    code = main(["simulate", "--scenario", "outage", "--broker", "mqtt://127.0.0.1:1",
                 "--state-dir", str(tmp_path)])
    assert code == 2
    assert "must run it: leave out --broker" in capsys.readouterr().err


def test_simulate_refuses_a_warmup_as_long_as_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A warm-up that does not end before the run would inject nothing: refused."""
    code = main(["simulate", "--duration", "30s", "--warmup", "30s",
                 "--state-dir", str(tmp_path)])
    assert code == 2
    assert "warmup must be >= 0 s and shorter than the run" in capsys.readouterr().err


def test_simulate_broker_port_is_for_the_private_broker(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--broker-port with --broker is refused (the port is the private broker's)."""
    code = main(["simulate", "--broker-port", "18830", "--broker", "mqtt://127.0.0.1:1",
                 "--state-dir", str(tmp_path)])
    assert code == 2
    assert "--broker-port is for the private broker" in capsys.readouterr().err


def test_simulate_refuses_a_too_short_duration(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A --duration that ends before the scenario's last step is refused."""
    code = main(["simulate", "--scenario", "outage", "--duration", "20s",
                 "--state-dir", str(tmp_path)])
    assert code == 2
    assert "after the end of the run (20 s)" in capsys.readouterr().err


def test_audit_needs_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """audit without logs, or on an empty directory, says what it needs."""
    assert main(["audit"]) == 2
    assert "give --state-dir DIR" in capsys.readouterr().err
    assert main(["audit", "--state-dir", str(tmp_path)]) == 2
    assert "no accept logs" in capsys.readouterr().err


def test_audit_exit_status_follows_loss(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """audit exits 0 when all arrived and 1 when something was lost, with the ids."""
    with AcceptLog(tmp_path / "accepted-0.db") as alog:
        for s in range(1, 6):
            alog.record(f"u-{s}", "dev", s, "fleet/dev/data/telemetry", "telemetry", 10.0 + s)
    rlog = ReceivedLog(tmp_path / "received.db")
    for s in range(1, 5):
        rlog.add(f"u-{s}", "fleet/dev/data/telemetry", 10.2 + s, None)
    rlog.close()
    code = main(["audit", "--accepted", str(tmp_path / "accepted-0.db"),
                 "--received", str(tmp_path / "received.db")])
    out = capsys.readouterr().out
    assert code == 1 and "LOST 1 message(s)" in out and "lost: u-5" in out
    assert main(["audit", "--state-dir", str(tmp_path), "--json"]) == 1
    assert '"lost": 1' in capsys.readouterr().out


def test_simulate_refuses_too_many_devices_per_process(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """More than 100 devices per process is refused with the --processes to use."""
    code = main(["simulate", "--devices", "250", "--processes", "2",
                 "--broker", "mqtt://127.0.0.1:1", "--state-dir", str(tmp_path)])
    assert code == 2
    assert "use --processes 3 or more" in capsys.readouterr().err
