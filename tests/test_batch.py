"""`nrconvert batch` without a conversion: jobs.toml checks, done.json fingerprints, exit-code policy,
and the local runner driving a fake unit command (a small script that fails on cue)."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nrconvert.batch import state
from nrconvert.batch.execute import DONE, FAILED, SKIPPED, error_message, run_attempt
from nrconvert.batch.jobs import load_jobs
from nrconvert.batch.local import LocalRunner
from nrconvert.batch.policy import batch_exit_code, is_retryable, normalise
from nrconvert.batch.units import Unit, check_glb, units_from_jobs
from nrconvert.errors import CaptureError, UsageError

from .conftest import run_cli

# Exits with the next code of its plan (a JSON list, one code per call; 0 past the end), logs
# every call's extra arguments, and writes its output only on success.
FAKE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    out, plan = Path(sys.argv[1]), json.loads(sys.argv[2])
    calls = out.with_name(out.name + ".calls")
    n = len(calls.read_text().splitlines()) if calls.exists() else 0
    with open(calls, "a") as f:
        f.write(" ".join(sys.argv[3:]) + "\\n")
    code = plan[n] if n < len(plan) else 0
    if code == -9:
        time.sleep(60)  # to be killed
    if code:
        print(f"error: {out.name}: planned failure {code}\\n  hint: none", file=sys.stderr)
        sys.exit(code)
    out.write_bytes(b"output of call %d" % (n + 1))
""")


def write_capture(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "transforms.json").write_text('{"frames": []}')
    (folder / "images").mkdir()
    (folder / "images" / "0.png").write_bytes(b"not really a png")
    return folder


def fake_unit(tmp_path: Path, name: str, plan: list[int], retries: int = 2) -> Unit:
    script = tmp_path / "fake_unit.py"
    script.write_text(FAKE)
    capture = tmp_path / f"cap_{name}"
    if not capture.exists():
        write_capture(capture)
    out = tmp_path / "out" / f"{name}.bin"
    return Unit(id=name, argv=[sys.executable, str(script), str(out), json.dumps(plan)], output=out,
                state_dir=out.with_suffix(".batch"), inputs=[capture], settings={"steps": 5},
                retries=retries, kind="file")


def calls(unit: Unit) -> list[str]:
    return unit.output.with_name(unit.output.name + ".calls").read_text().splitlines()


# ---------------------------------------------------------------- jobs.toml

def write_jobs(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def test_jobs_defaults_relative_paths_and_overrides(tmp_path):
    write_capture(tmp_path / "caps" / "a")
    write_capture(tmp_path / "caps" / "b")
    path = write_jobs(tmp_path, """
        [defaults]
        preset = "tiny"
        retries = 1
        set = { steps = 50, neural = false }

        [[jobs]]
        capture = "caps/a"
        output = "out/a.glb"

        [[jobs]]
        id = "b-hi"
        capture = "caps/b/transforms.json"
        output = "out/b.glb"
        preset = "fast"
        num_cpus = 4
        num_gpus = 1
        set = { steps = 900, lr = 0.005 }
    """)
    spec = load_jobs(path)
    a, b = spec.jobs
    assert (a.id, a.capture, a.output) == ("a", tmp_path / "caps" / "a", tmp_path / "out" / "a.glb")
    assert (a.preset, a.retries, a.num_cpus, a.num_gpus) == ("tiny", 1, 1, 0)
    assert a.settings == {"steps": "50", "neural": "false"}
    assert (b.id, b.preset, b.num_cpus, b.num_gpus) == ("b-hi", "fast", 4, 1)
    assert b.settings == {"steps": "900", "neural": "false", "lr": "0.005"}  # job's set over the defaults'
    ua, ub = units_from_jobs(spec)
    assert ua.argv == ["nrconvert", str(a.capture), "-o", str(a.output), "--workdir", str(ua.workdir),
                       "--preset", "tiny",
                       "--set", "neural=false", "--set", "steps=50", "--progress", "json"]
    assert ua.workdir == tmp_path / "out" / "a.work"
    assert ub.inputs == [tmp_path / "caps" / "b"]  # a transforms.json capture: its whole folder
    assert ua.done_file == tmp_path / "out" / "a.batch" / "done.json"
    assert (ub.resources.num_cpus, ub.resources.num_gpus, ub.order) == (4, 1, 2)


@pytest.mark.parametrize("body, error, where, words", [
    ('[[jobs]]\noutput = "o.glb"\n', UsageError, ":1", "'capture' is missing"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\nstepz = 3\n', UsageError, ":4", "unknown key 'stepz'"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\npreset = "huge"\n', UsageError, ":4", "unknown preset"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\n\n[jobs.set]\nsteps = 5\nlearning_rate = 1\n',
     UsageError, ":7", "unknown setting 'learning_rate'"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\nset = { steps = "many" }\n', UsageError, ":4", "set: steps = 'many'"),
    ('[[jobs]]\ncapture = "nothere"\noutput = "o.glb"\n', CaptureError, ":2", "does not exist"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.png"\n', UsageError, ":3", "must be a .glb"),
    ('[[jobs]]\ncapture = "cap"\noutput = "cap/o.glb"\n', UsageError, ":3", "inside the capture folder"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\nretries = -1\n', UsageError, ":4", "'retries'"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\nnum_gpus = true\n', UsageError, ":4", "'num_gpus'"),
    ('[defaults]\npreset = "tiny"\nnum_cpus = 0\n\n[[jobs]]\ncapture = "cap"\noutput = "o.glb"\n',
     UsageError, ":3", "'num_cpus'"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\n\n[[jobs]]\ncapture = "cap"\noutput = "o.glb"\n',
     UsageError, ":5", "same output as job 1 (line 1)"),
    ('[[jobs]]\ncapture = "cap"\noutput = "a/o.glb"\n\n[[jobs]]\ncapture = "cap"\noutput = "b/o.glb"\n',
     UsageError, ":5", "same id"),
    ('[[jobs]]\ncapture = "cap"\noutput = "o.glb"\nid = "a b"\n', UsageError, ":4", "'id'"),
    ('[[jobs]]\ncapture = "cap"\noutput = = "o.glb"\n', UsageError, "", "line 3"),
    ('[defaults]\npreset = "tiny"\n', UsageError, "", "no jobs"),
])
def test_jobs_errors_name_file_line_and_key(tmp_path, body, error, where, words):
    write_capture(tmp_path / "cap")
    path = write_jobs(tmp_path, body)
    with pytest.raises(error) as info:
        load_jobs(path)
    message = str(info.value)
    assert message.startswith(f"{path}{where}"), message
    assert words in message, message


def test_jobs_file_missing(tmp_path):
    with pytest.raises(UsageError, match="jobs file not found"):
        load_jobs(tmp_path / "nope.toml")


# ---------------------------------------------------------------- fingerprints and done.json

def test_fingerprint_follows_inputs_settings_and_version(tmp_path, monkeypatch):
    unit = fake_unit(tmp_path, "a", [])
    base, info = state.fingerprint(unit)
    assert info == {"files": 2, "bytes": len('{"frames": []}') + len(b"not really a png")}
    assert state.fingerprint(unit)[0] == base  # stable
    image = unit.inputs[0] / "images" / "0.png"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = state.fingerprint(unit)[0]
    assert touched != base
    image.write_bytes(b"another size")
    assert state.fingerprint(unit)[0] not in (base, touched)
    now = state.fingerprint(unit)[0]
    (unit.inputs[0] / "images" / "1.png").write_bytes(b"new photo")
    assert state.fingerprint(unit)[0] != now
    now = state.fingerprint(unit)[0]
    unit.settings = {"steps": 6}
    assert state.fingerprint(unit)[0] != now
    now = state.fingerprint(unit)[0]
    monkeypatch.setattr(state, "__version__", "9.9.9")
    assert state.fingerprint(unit)[0] != now


def test_done_json_written_after_output_and_checked_against_it(tmp_path):
    unit = fake_unit(tmp_path, "a", [0])
    result = run_attempt(unit, "run1")
    assert (result.status, result.attempts) == (DONE, 1)
    done = json.loads(unit.done_file.read_text())
    digest, info = state.fingerprint(unit)
    assert done["fingerprint"] == digest and done["inputs"] == info
    assert done["output_size"] == unit.output.stat().st_size and done["attempts"] == 1
    assert done["history"][0]["exit_code"] == 0 and done["command"] == unit.argv
    assert state.is_done(unit, digest)
    # Skipped on the next run: no new call, done.json untouched.
    before = unit.done_file.read_bytes()
    assert run_attempt(unit, "run2").status == SKIPPED
    assert len(calls(unit)) == 1 and unit.done_file.read_bytes() == before
    # A changed output (size) or a missing one is not done any more.
    unit.output.write_bytes(b"edited by hand, longer")
    assert not state.is_done(unit, digest)
    unit.output.unlink()
    assert not state.is_done(unit, digest)
    unit.done_file.write_text("{ torn")
    assert state.read_done(unit) is None


def test_failed_output_check_writes_no_done_json(tmp_path):
    unit = fake_unit(tmp_path, "a", [0])
    unit.kind = "convert"  # expects a GLB; the fake writes plain bytes
    result = run_attempt(unit, "run1")
    assert (result.status, result.exit_code) == (FAILED, 7)
    assert "truncated GLB (16 bytes)" in result.message
    assert not unit.done_file.exists()


def test_unwritable_state_folder_fails_the_unit_with_an_output_error(tmp_path):
    unit = fake_unit(tmp_path, "a", [0])
    unit.state_dir.parent.mkdir(parents=True)
    unit.state_dir.write_text("a file where the state folder should be")
    result = run_attempt(unit, "run1")
    assert (result.status, result.exit_code) == (FAILED, 6)
    assert str(unit.state_dir) in result.message
    assert not unit.output.exists()  # the command never ran


def test_check_glb_catches_truncation(tmp_path):
    doc = b'{"asset":{"version":"2.0"}}   '
    glb = b"glTF" + (2).to_bytes(4, "little") + (20 + len(doc)).to_bytes(4, "little")
    glb += len(doc).to_bytes(4, "little") + b"JSON" + doc
    path = tmp_path / "a.glb"
    path.write_bytes(glb)
    assert check_glb(path) is None
    path.write_bytes(glb[:-4])
    assert "GLB header says" in check_glb(path)


# ---------------------------------------------------------------- exit codes

def test_exit_code_policy():
    assert [is_retryable(c) for c in (75, 76, 79, 137, 143)] == [True] * 5
    assert not any(is_retryable(c) for c in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 139))
    assert normalise(-9) == 137 and normalise(3) == 3
    assert batch_exit_code([]) == 0
    assert batch_exit_code([76, 3, 4]) == 3  # permanent beats retryable; first in jobs order
    assert batch_exit_code([76, 75]) == 76
    assert batch_exit_code([137]) == 79  # killed: interrupted, retryable
    assert batch_exit_code([139, 76]) == 1  # segfault: a crash, permanent


def test_error_message_takes_the_error_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_text('{"stage": "train"}\nerror: /cap/transforms.json: frame 3 has no file_path\n  hint: fix\n')
    assert error_message(log, 3) == "/cap/transforms.json: frame 3 has no file_path"
    log.write_text('Traceback (most recent call last):\n  File "x"\nZeroDivisionError: division by zero\n')
    assert error_message(log, 1) == "ZeroDivisionError: division by zero"
    log.write_text('{"stage": "train"}\n')
    assert error_message(log, 137) == "killed by SIGKILL"


# ---------------------------------------------------------------- local runner

def test_local_runner_retries_retryable_with_resume_not_permanent(tmp_path):
    flaky = fake_unit(tmp_path, "flaky", [75, 76, 0])  # disk full, then out of memory, then fine
    broken = fake_unit(tmp_path, "broken", [3])
    hopeless = fake_unit(tmp_path, "hopeless", [79, 79, 79, 0], retries=2)
    events = []
    results = LocalRunner(2, lambda kind, unit, r: events.append((kind, unit.id, r.exit_code))).run(
        [flaky, broken, hopeless], "run1")
    by_id = {r.unit_id: r for r in results}
    assert (by_id["flaky"].status, by_id["flaky"].attempts) == (DONE, 3)
    assert calls(flaky) == ["", "--resume", "--resume"]  # every retry resumes
    done = json.loads(flaky.done_file.read_text())
    assert [h["exit_code"] for h in done["history"]] == [75, 76, 0] and done["attempts"] == 3
    assert (by_id["broken"].status, by_id["broken"].exit_code, by_id["broken"].attempts) == (FAILED, 3, 1)
    assert by_id["broken"].message == "broken.bin: planned failure 3"
    assert len(calls(broken)) == 1 and not broken.done_file.exists()
    assert (by_id["hopeless"].status, by_id["hopeless"].attempts) == (FAILED, 3)  # 1 + 2 retries
    assert ("retry", "flaky", 75) in events and ("retry", "hopeless", 79) in events
    assert not any(kind == "retry" and uid == "broken" for kind, uid, _ in events)
    assert batch_exit_code([by_id[u].exit_code for u in ("flaky", "broken", "hopeless")
                            if by_id[u].status == FAILED]) == 3


def test_killed_unit_is_retried_and_a_new_batch_resumes_same_inputs(tmp_path):
    unit = fake_unit(tmp_path, "a", [-9, 0])
    runner = LocalRunner(1)
    killer_done = []

    def kill_when_started():
        for _ in range(200):
            records = state.run_records(unit, "run1")
            if records and records[0].get("pid"):
                time.sleep(0.2)
                os.kill(records[0]["pid"], signal.SIGKILL)
                killer_done.append(True)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_when_started)
    thread.start()
    (result,) = runner.run([unit], "run1")
    thread.join()
    assert killer_done and result.status == DONE and result.attempts == 2
    history = json.loads(unit.done_file.read_text())["history"]
    assert [h["exit_code"] for h in history] == [137, 0]
    # A later batch run on changed inputs starts fresh (no --resume, the work folder emptied of the
    # old inputs' stages); one on the same inputs resumes and keeps the work folder.
    unit.workdir = tmp_path / "out" / "a.work"
    unit.workdir.mkdir()
    (unit.workdir / "field.pt").write_text("trained on the old photos")
    unit.output.unlink()
    (unit.inputs[0] / "images" / "0.png").write_bytes(b"a new photo")
    run_attempt(unit, "run2")
    assert calls(unit)[-1] == "" and not unit.workdir.exists()
    unit.workdir.mkdir()
    (unit.workdir / "field.pt").write_text("trained on the new photos")
    unit.output.unlink()
    run_attempt(unit, "run3")
    assert calls(unit)[-1] == "--resume" and (unit.workdir / "field.pt").exists()
    records = json.loads(unit.attempts_file.read_text())["records"]
    assert [(r["seq"], r["run"], r["attempt"], r["resume"]) for r in records] == [
        (1, "run1", 1, False), (2, "run1", 2, True), (3, "run2", 1, False), (4, "run3", 1, True)]
    assert [unit.log_file(n).exists() for n in (1, 2, 3, 4)] == [True] * 4  # one log per attempt


def test_child_dies_with_its_parent(tmp_path):
    """batch/child.py: the conversion gets SIGTERM when the process that started it is killed."""
    pid_file = tmp_path / "grandchild.pid"
    parent_code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        code = ("import os, time\\n"
                "from nrconvert.batch.child import die_with_parent\\n"
                "die_with_parent(int(os.environ['PARENT']))\\n"
                "open({str(pid_file)!r}, 'w').write(str(os.getpid()))\\n"
                "time.sleep(120)\\n")
        subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PARENT=str(os.getpid())))
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        for _ in range(300):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child), "the grandchild outlived its killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- the command line

def test_cli_dry_run_and_errors(tmp_path):
    write_capture(tmp_path / "cap")
    path = write_jobs(tmp_path, """
        [defaults]
        preset = "tiny"

        [[jobs]]
        capture = "cap"
        output = "out/a.glb"
        set = { steps = 10 }
    """)
    res = run_cli("batch", str(path), "--dry-run", timeout=120)
    assert res.returncode == 0, res.stderr
    assert "a: run (1 CPU, 0 GPU, 2 retries)" in res.stdout
    assert (f"nrconvert {tmp_path / 'cap'} -o {tmp_path / 'out' / 'a.glb'} --workdir {tmp_path / 'out' / 'a.work'} "
            "--preset tiny --set steps=10") in res.stdout
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    res = run_cli("batch", str(path), "--ray", "auto", "--jobs", "2", timeout=120)
    assert res.returncode == 2 and "--jobs is for runs on this machine" in res.stderr.replace("\n", "")
    path.write_text(path.read_text() + "\n[[jobs]]\ncapture = \"cap\"\n")
    res = run_cli("batch", str(path), timeout=120)
    assert res.returncode == 2, res.stderr
    assert f"{path}:9: job 2: 'output' is missing" in res.stderr.replace("\n", "")  # rich wraps at 80


def test_cli_batch_runs_a_failing_capture_to_its_exit_code(tmp_path):
    """A real unit command (nrconvert on a malformed capture) fails permanently: no retry, exit 3."""
    cap = write_capture(tmp_path / "cap")  # transforms.json without frames or intrinsics
    path = write_jobs(tmp_path, '[[jobs]]\ncapture = "cap"\noutput = "out/a.glb"\npreset = "tiny"\n')
    res = run_cli("batch", str(path), timeout=300)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "1 units: 0 done, 0 skipped (already done), 1 failed; exit 3" in res.stdout
    records = json.loads((tmp_path / "out" / "a.batch" / "attempts.json").read_text())["records"]
    assert [r["exit_code"] for r in records] == [3]  # permanent: not retried
    log = (tmp_path / "out" / "a.batch" / "attempt-1.log").read_text()
    assert str(cap) in log and "error:" in log


def test_cli_unreachable_ray_cluster_fails_fast(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'nrconvert[dist]')")

    write_capture(tmp_path / "cap")
    path = write_jobs(tmp_path, '[[jobs]]\ncapture = "cap"\noutput = "out/a.glb"\n')
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    res = run_cli("batch", str(path), "--ray", f"127.0.0.1:{port}", timeout=120)
    assert res.returncode == 2, res.stderr
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in res.stderr.replace("\n", "")
    assert time.time() - start < 60  # ray.init alone would keep retrying for minutes
    assert not (tmp_path / "out" / "a.batch").exists()
