"""deploy/run_simulator_daemon.sh: start, status and stop real trapsim processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trapsim.service.settings import ENV_PREFIX

from .conftest import REPO

SCRIPT = REPO / "deploy" / "run_simulator_daemon.sh"


def daemon(*args, cwd: Path, **variables) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["TRAPSIM_BIN"] = str(Path(sys.executable).with_name("trapsim"))
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=env | variables,
        capture_output=True,
        text=True,
        timeout=120,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def workdir(tmp_path):
    """The daemon's working directory; a simulator it leaves behind is killed."""
    yield tmp_path
    for pid_file in tmp_path.rglob("*.pid"):
        pid = int(pid_file.read_text())
        # Only a trapsim of this test: the pid may have been recycled.
        try:
            ours = b"trapsim" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ours &= Path(f"/proc/{pid}/cwd").resolve() == tmp_path.resolve()
        except OSError:
            continue
        if ours:
            os.kill(pid, signal.SIGKILL)


def test_start_status_stop_cycle(workdir):
    pid_file, log = workdir / "runs" / "trapsim.pid", workdir / "runs" / "trapsim.log"
    # A stale pid file (a process that is gone) is reported, then replaced by start.
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file.parent.mkdir()
    pid_file.write_text(f"{gone.pid}\n")
    res = daemon("status", cwd=workdir)
    assert res.returncode == 1 and "pid file" in res.stdout

    res = daemon("start", "--sleep", 0.01, "--seed", 4, cwd=workdir)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "started" in res.stdout
    pid = int(pid_file.read_text())
    assert alive(pid) and pid != gone.pid
    assert "run directory " in log.read_text()

    again = daemon("start", cwd=workdir)
    assert again.returncode != 0
    assert "already running" in again.stderr and str(pid) in again.stderr
    assert int(pid_file.read_text()) == pid
    assert len([p for p in (workdir / "runs").iterdir() if p.is_dir()]) == 1

    res = daemon("status", cwd=workdir)
    assert res.returncode == 0 and f"running (pid {pid})" in res.stdout

    time.sleep(2)
    res = daemon("stop", cwd=workdir)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "stopped cleanly (exit status 0)" in res.stdout
    # stop returned only after trapsim exited and its report was written.
    assert not alive(pid) and not pid_file.exists()
    [run] = [p for p in (workdir / "runs").iterdir() if p.is_dir()]
    stats = json.loads((run / "stats.json").read_text())
    assert stats["stopped_by"] == "SIGTERM" and stats["ticks"] > 50
    assert (run / "ticks.parquet").is_file() and not (run / ".parts").exists()
    assert f"trapsim (pid {pid}) exited with status 0" in log.read_text()

    res = daemon("status", cwd=workdir)
    assert res.returncode == 3 and "not running" in res.stdout
    res = daemon("stop", cwd=workdir)
    assert res.returncode == 0 and "not running" in res.stdout


def test_start_with_bad_options_fails_with_trapsim_error(workdir):
    paths = {"TRAPSIM_PID_FILE": "state/sim.pid", "TRAPSIM_LOG_FILE": "logs/sim.log"}
    res = daemon("start", "--volatility", -1, cwd=workdir, **paths)
    assert res.returncode == 1
    assert "trapsim: error: --volatility" in res.stderr and "failed to start" in res.stderr
    assert not (workdir / "state" / "sim.pid").exists()
    assert "exited with status 2" in (workdir / "logs" / "sim.log").read_text()
    assert daemon("status", cwd=workdir, **paths).returncode == 3


def test_usage(workdir):
    res = daemon("restart", cwd=workdir)
    assert res.returncode == 2 and "usage" in res.stderr
