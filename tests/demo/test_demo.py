"""`fieldmq demo` end to end: headless, with a real Chromium on its dashboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fieldmq.testing import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.timeout(240)
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (apt-get install chromium)")
def test_demo_runs_headless_with_outage_and_loses_nothing(tmp_path: Path) -> None:
    """The demo runs with a broker outage; in Chromium the dashboard shows the fleet, live
    chart points, the queue filling during the outage and draining after it, and the loss
    audit; the run ends with lost = 0 and everything ingested."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fieldmq", "demo", "--duration", "45", "--outage-at", "12",
         "--outage-for", "12", "--devices", "12", "--port", str(port), "--data-dir",
         str(tmp_path / "demo"), "--json", "--keep-dashboard"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    shot = tmp_path / "dashboard.png"
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("dashboard"):
                break
        else:
            raise AssertionError(f"the demo never served its dashboard: {proc.stderr}")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#fleet tbody tr >> nth=11", timeout=30_000)
            count = ("() => { const s = window.fieldmqDashboard.deviceSeries;"
                     " const k = Object.keys(s); return k.length ? s[k[0]][0].length : 0; }")
            page.wait_for_function(f"({count})() >= 1", timeout=30_000)
            first = page.evaluate(count)
            page.wait_for_function(f"({count})() > {first}", timeout=30_000)
            # The outage shows as queued messages in the fleet chart.
            page.wait_for_function(
                "() => window.fieldmqDashboard.queue[1].some((q) => q > 0)", timeout=40_000)
            # The run ends: the audit reaches the page, and the queue has drained.
            page.wait_for_function(
                "() => document.getElementById('k-lost').textContent === '0'", timeout=120_000)
            page.wait_for_function(
                "() => { const q = window.fieldmqDashboard.queue[1];"
                " return q.length > 0 && q[q.length - 1] === 0; }", timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        proc.send_signal(signal.SIGINT)  # --keep-dashboard waits for Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["audit"]["lost"] == 0 and result["audit"]["sent"] > 0
    assert result["ingest"]["inserted"] == result["audit"]["received"]
    assert shot.stat().st_size > 20_000
    target = os.environ.get("FIELDMQ_SCREENSHOT")
    if target:
        shutil.copy(shot, target)


@pytest.mark.parametrize(("args", "named"), [
    (["--rate", "0"], "--rate"),
    (["--rate", "1000"], "--rate"),
    (["--warmup", "-1"], "--warmup"),
])
def test_bad_rate_or_warmup_is_refused_with_a_clear_message(
    tmp_path: Path, args: list[str], named: str
) -> None:
    data = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "fieldmq", "demo", *args, "--no-dashboard", "--data-dir",
         str(data)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert named in r.stderr and "fieldmq demo:" in r.stderr
    assert not data.exists()  # refused before anything started
