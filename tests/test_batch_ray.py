"""`nrconvert batch --ray` on a real local Ray cluster (`ray start --head` on loopback, 2 CPUs).

Four tiny captures become four GLBs that pass the Khronos validator, although one unit's Ray
worker is SIGKILLed mid-task (Ray retries the task) and another unit's conversion is stopped with
SIGTERM after its training (exit 79: the task raises, `retry_exceptions` retries it, and the retry
resumes from the trained field). A second run of the same batch redoes nothing. The cluster is
torn down by process id (its process group and every descendant), never with a broad `ray stop`
that would also end other Ray clusters on the machine; the teardown checks that none is left.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nrconvert.export.validate import validate_glb

from .conftest import run_cli

pytestmark = pytest.mark.slow
if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install 'nrconvert[dist]')", allow_module_level=True)

RAY = Path(sys.executable).with_name("ray")
# Small enough for well under a minute per unit on one core, big enough to give a real surface.
SETTINGS = 'preset = "tiny"\nset = { steps = 80, pbr_steps = 20, texture_fit_iterations = 1, neural = false, ' \
           'lods = 1, texture_size = 128 }\n'


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[int(name)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def _cluster_pids(group: int) -> set[int]:
    """Live processes of the cluster: its process group (the daemons) and all their descendants
    (workers run in groups of their own, unit conversions under them)."""
    procs = {pid: info for pid, info in _processes().items() if info[2] != "Z"}
    found = {pid for pid, (_, pgid, _) in procs.items() if pgid == group}
    while True:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def _alive(pid: int) -> bool:
    info = _processes().get(pid)
    return info is not None and info[2] != "Z"


@pytest.fixture(scope="module")
def ray_address():
    temp = Path(tempfile.mkdtemp(prefix="nrcray-", dir="/tmp"))  # Ray's socket paths must stay short
    gcs, client, agent, dashboard = _free_ports(4)
    cmd = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=2",
           "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
           f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
           f"--dashboard-port={dashboard}", "--object-store-memory=100000000"]
    with open(temp / "start.log", "wb") as log:
        start = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    group = start.pid  # a new session: every daemon of this cluster is in this process group
    try:
        assert start.wait(300) == 0, (temp / "start.log").read_text()[-3000:]
        yield f"127.0.0.1:{gcs}"
    finally:
        if start.poll() is None:
            start.kill()
        pids = _cluster_pids(group)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        left = [p for p in pids if _alive(p)] + sorted(_cluster_pids(group))
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def captures(tiny_capture, tmp_path_factory) -> list[Path]:
    """Four tiny captures: suzanne (the session's capture) and a box, each under two names."""
    root = tmp_path_factory.mktemp("batch_captures")
    box = root / "box_src"
    res = run_cli("synth", str(box), "--object", "box", "--preset", "tiny", "--seed", "1")
    assert res.returncode == 0, res.stderr
    out = []
    for name, src in (("suzanne_a", tiny_capture), ("suzanne_b", tiny_capture), ("box_a", box), ("box_b", box)):
        shutil.copytree(src, root / name)
        out.append(root / name)
    return out


def _jobs_file(folder: Path, captures: list[Path]) -> Path:
    text = "[defaults]\n" + SETTINGS
    for cap in captures:
        text += f'\n[[jobs]]\ncapture = "{cap}"\noutput = "out/{cap.name}.glb"\n'
    path = folder / "jobs.toml"
    path.write_text(text)
    return path


def _batch(jobs: Path, address: str) -> subprocess.Popen:
    with open(jobs.with_name("batch.out"), "w") as out, open(jobs.with_name("batch.err"), "w") as err:
        return subprocess.Popen([sys.executable, "-m", "nrconvert", "batch", str(jobs), "--ray", address],
                                stdout=out, stderr=err)


def _first_attempt(state_dir: Path) -> dict | None:
    try:
        records = json.loads((state_dir / "attempts.json").read_text())["records"]
    except (OSError, ValueError, KeyError):
        return None
    return records[0] if records and records[0].get("pid") else None


def _log_has(state_dir: Path, words: str) -> bool:
    try:
        return words in (state_dir / "attempt-1.log").read_text()
    except OSError:
        return False


def _wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        assert proc.poll() is None, f"the batch ended before {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def first_run(ray_address, captures, tmp_path_factory):
    """Run the batch once; SIGKILL one unit's Ray worker while it trains and SIGTERM another unit's
    conversion once its field is trained."""
    folder = tmp_path_factory.mktemp("batch_ray")
    jobs = _jobs_file(folder, captures)
    states = [folder / "out" / f"{cap.name}.batch" for cap in captures]
    proc = _batch(jobs, ray_address)
    try:
        def training():
            for s in states:
                rec = _first_attempt(s)
                if rec and _log_has(s, '"stage": "train", "event": "progress"'):
                    return s, rec
        killed_state, killed = _wait_for("a unit training", training, proc)
        os.kill(killed["worker_pid"], signal.SIGKILL)

        def trained():
            for s in states:
                rec = _first_attempt(s)
                if s != killed_state and rec and _log_has(s, '"stage": "extract", "event": "end"'):
                    return s, rec
        stopped_state, stopped = _wait_for("another unit past training", trained, proc)
        os.kill(stopped["pid"], signal.SIGTERM)
        rc = proc.wait(900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = jobs.with_name("batch.out").read_text(), jobs.with_name("batch.err").read_text()
    return dict(jobs=jobs, rc=rc, out=out, err=err, states=states, killed=(killed_state, killed),
                stopped=(stopped_state, stopped), glbs=[folder / "out" / f"{c.name}.glb" for c in captures])


def test_four_valid_glbs_despite_a_killed_worker_and_a_stopped_unit(first_run):
    assert first_run["rc"] == 0, first_run["out"][-3000:] + first_run["err"][-3000:]
    assert "4 units: 4 done, 0 skipped (already done), 0 failed; exit 0" in first_run["out"]
    for glb in first_run["glbs"]:
        report = validate_glb(glb)
        assert report.errors == 0, report.format()
        assert glb.stat().st_size > 10_000


def test_killed_worker_was_retried(first_run):
    state, killed = first_run["killed"]
    done = json.loads((state / "done.json").read_text())
    first, second = done["history"]
    assert done["attempts"] == 2
    assert first["worker_pid"] == killed["worker_pid"] and first["exit_code"] is None  # lost with its worker
    assert second["worker_pid"] != killed["worker_pid"] and second["exit_code"] == 0 and second["resume"]
    assert not _alive(killed["pid"]), "the conversion outlived its killed Ray worker"
    assert f"{state.name.removesuffix('.batch')}: done in" in first_run["err"]
    assert "(attempt 2)" in first_run["err"]


def test_retryable_exit_was_retried_with_resume(first_run):
    state, stopped = first_run["stopped"]
    done = json.loads((state / "done.json").read_text())
    assert [h["exit_code"] for h in done["history"]] == [79, 0]  # SIGTERM → interrupted → retried
    retry_log = (state / "attempt-2.log").read_text()
    assert retry_log.splitlines()[0].endswith("--resume")
    assert '"stage": "train", "event": "progress"' not in retry_log  # the trained field was reused
    assert '"event": "done"' in retry_log


def test_rerun_redoes_nothing(first_run, ray_address):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for s in first_run["states"]
              for p in (s / "done.json", s / "attempts.json")}
    glb_times = [g.stat().st_mtime_ns for g in first_run["glbs"]]
    res = run_cli("batch", str(first_run["jobs"]), "--ray", ray_address, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 units: 0 done, 4 skipped (already done), 0 failed; exit 0" in res.stdout
    assert [g.stat().st_mtime_ns for g in first_run["glbs"]] == glb_times
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before
    assert not any((s / "attempt-3.log").exists() for s in first_run["states"])
