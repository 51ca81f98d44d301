"""The worker subprocess and its client: protocol, cancel, death, version check, no orphans."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from blender_gs_addon import GSError
from blender_gs_addon.worker.client import WorkerClient
from blender_gs_addon.worker.protocol import PROTOCOL, decode, encode


@pytest.fixture(scope="module")
def client():
    c = WorkerClient()
    yield c
    c.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_protocol_lines_round_trip():
    msg = {"type": "progress", "id": "a", "fraction": 0.5, "message": "naïve ✓"}
    line = encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == msg
    with pytest.raises(ValueError):
        decode(b"[1, 2]\n")
    # Non-finite numbers never break a line: JSON has no NaN, so they travel as null.
    nan_line = encode({"type": "x", "v": float("nan"), "w": [float("inf"), 1.5], "t": (2,)})
    assert decode(nan_line) == {"type": "x", "v": None, "w": [None, 1.5], "t": [2]}
    import numpy as np

    assert decode(encode({"type": "x", "a": np.float32(0.25), "b": np.array([1, 2])})) == {
        "type": "x", "a": 0.25, "b": [1, 2]}
    for bad in (b"NaN\n", b'{"type": "x", "v": NaN}\n', b'{"type": "x", "v": -Infinity}\n',
                b"[" * 100_000 + b"\n", b"\xff\xfe\n", b"{}\n", b'{"type": 3}\n'):
        with pytest.raises(ValueError):
            decode(bad)


def test_hello_reports_environment(client):
    info = client.info
    assert info["type"] == "hello" and info["protocol"] == PROTOCOL
    assert info["torch"] and info["cuda"] in (True, False)
    assert _pid_alive(info["pid"])


def test_job_streams_progress_and_result(client):
    events = []
    out = client.run("wait", {"seconds": 0.3}, on_event=events.append, timeout=20)
    assert out == {"waited": 0.3}
    fractions = [e.fraction for e in events if e.kind == "progress"]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] <= 1.0
    check = client.run("check", timeout=20)
    assert check["torch"] == client.info["torch"]


def test_unknown_job_comes_back_as_error_and_worker_survives(client):
    with pytest.raises(GSError, match="unknown job kind 'nope'"):
        client.run("nope", timeout=20)
    assert client.run("wait", {"seconds": 0.05}, timeout=20) == {"waited": 0.05}


def test_cancel_stops_within_a_second(client):
    job = client.submit("wait", {"seconds": 60})
    time.sleep(0.3)
    start = time.monotonic()
    job.cancel(grace=1.0)
    assert time.monotonic() - start < 1.0
    assert job.cancelled and client.alive  # cooperative: the worker stays warm
    assert client.run("wait", {"seconds": 0.05}, timeout=20) == {"waited": 0.05}


def test_job_that_ignores_cancel_is_terminated_after_the_grace():
    c = WorkerClient()
    pid = c.info["pid"]
    job = c.submit("wait", {"seconds": 60, "cancellable": False})
    time.sleep(0.3)
    start = time.monotonic()
    job.request_cancel()  # returns at once: safe on a UI thread
    assert time.monotonic() - start < 0.1 and not job.done
    job.cancel(grace=0.5)
    took = time.monotonic() - start
    assert 0.5 <= took < 2.0, took
    assert job.cancelled and not c.alive and not _pid_alive(pid)


def test_sigkill_mid_job_gives_clear_error_quickly_and_no_orphan():
    c = WorkerClient()
    pid = c.info["pid"]
    job = c.submit("wait", {"seconds": 60})
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(GSError, match="killed by signal 9"):
        job.wait(timeout=10)
    assert time.monotonic() - start <= 2.0
    c.close()
    assert not _pid_alive(pid)


def test_version_mismatch_is_refused():
    with pytest.raises(GSError, match="version 0.0.0-test"):
        WorkerClient(version="0.0.0-test")


def test_missing_interpreter_is_a_clear_error(tmp_path):
    with pytest.raises(GSError, match="does not exist"):
        WorkerClient(python=str(tmp_path / "nope" / "python"))


def test_worker_exits_when_client_process_dies(tmp_path):
    # A client process that starts a worker and is then SIGKILLed must not leave the worker.
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {os.getcwd()!r})\n"
        "from blender_gs_addon.worker.client import WorkerClient\n"
        "c = WorkerClient()\n"
        "print(c.info['pid'], flush=True)\n"
        "time.sleep(60)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=root)
    worker_pid = int(proc.stdout.readline())
    assert _pid_alive(worker_pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while _pid_alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(worker_pid)


# ------------------------------------------------------------- the raw protocol, no client
class _RawWorker:
    """The worker process driven line by line, to send what the client never would (two jobs
    at once, a job and its cancel in one write)."""

    def __init__(self, *, env=None):
        from blender_gs_addon import __version__

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "blender_gs_addon.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root,
            env={**os.environ, "PYTHONPATH": root, **(env or {})})
        self.send({"type": "hello", "protocol": PROTOCOL, "version": __version__})
        self.hello = self.read(timeout=60)
        assert self.hello["type"] == "hello", self.hello

    def send(self, *messages):
        # One write for all: the worker sees them back to back.
        self.proc.stdin.write(b"".join(encode(m) for m in messages))
        self.proc.stdin.flush()

    def read(self, *, timeout: float) -> dict:
        """The next message that is not a heartbeat."""
        import select

        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not self.proc.stdout.peek(1) and not select.select(
                    [self.proc.stdout], [], [], left)[0]:
                raise AssertionError(f"no message from the worker within {timeout} s")
            message = decode(self.proc.stdout.readline())
            if message["type"] != "heartbeat":
                return message

    def read_until(self, kinds, *, timeout: float) -> dict:
        """Skip progress and log lines; the first message of a type in ``kinds``."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(timeout=max(0.0, deadline - time.monotonic()))
            if message["type"] in kinds:
                return message

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def raw():
    worker = _RawWorker()
    yield worker
    worker.close()


def test_cancel_sent_right_behind_its_job_is_honoured(raw):
    # The cancel arrives before the worker's main loop has taken the job off its queue.
    for i in range(3):
        start = time.monotonic()
        raw.send({"type": "job", "id": f"j{i}", "kind": "wait", "params": {"seconds": 60}},
                 {"type": "cancel", "id": f"j{i}"})
        end = raw.read_until({"cancelled", "result", "error"}, timeout=5)
        assert end == {"type": "cancelled", "id": f"j{i}"}
        assert time.monotonic() - start < 1.0
    # A cancel for a job that has ended (or never was) is ignored; the next job runs fully.
    raw.send({"type": "cancel", "id": "j0"}, {"type": "cancel", "id": "nope"},
             {"type": "job", "id": "k", "kind": "wait", "params": {"seconds": 0.1}})
    assert raw.read_until({"cancelled", "result", "error"}, timeout=10) == {
        "type": "result", "id": "k", "outputs": {"waited": 0.1}}


def test_second_job_while_one_runs_is_refused_as_busy(raw):
    raw.send({"type": "job", "id": "first", "kind": "wait", "params": {"seconds": 60}},
             {"type": "job", "id": "second", "kind": "wait", "params": {"seconds": 0.1}})
    busy = raw.read_until({"error", "result", "cancelled"}, timeout=5)
    assert busy["error_type"] == "Busy" and busy["id"] == "second"
    assert busy["running"] == "first" and "busy with job first" in busy["message"]
    # The refused job was not queued: cancelling the first leaves the worker idle, and a job
    # sent after the first's end is accepted at once (no Busy from a stale slot).
    raw.send({"type": "cancel", "id": "first"})
    assert raw.read_until({"error", "result", "cancelled"}, timeout=5) == {
        "type": "cancelled", "id": "first"}
    raw.send({"type": "job", "id": "third", "kind": "check", "params": {}})
    third = raw.read_until({"error", "result", "cancelled"}, timeout=30)
    assert third["type"] == "result" and third["id"] == "third"
    assert third["outputs"]["torch"] == raw.hello["torch"]
    raw.proc.stdin.close()
    assert raw.proc.wait(timeout=5) == 0


def test_worker_exits_promptly_when_stdin_closes_mid_job(raw):
    # What any platform sees when the parent dies: EOF on stdin (PR_SET_PDEATHSIG is Linux's).
    raw.send({"type": "job", "id": "long", "kind": "wait", "params": {"seconds": 60}})
    assert raw.read_until({"progress"}, timeout=10)["id"] == "long"
    start = time.monotonic()
    raw.proc.stdin.close()
    assert raw.proc.wait(timeout=5) == 0
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_terminate_and_hang_up_mid_job_leave_no_job_folder(tmp_path, signum):
    # SIGTERM is what PR_SET_PDEATHSIG sends when sshd's session dies, SIGHUP what a hung-up
    # session can send. pycolmap, which the hello imports where installed, puts glog's C
    # failure handler on SIGTERM, which would end the process with the folder left behind.
    worker = _RawWorker(env={"TMPDIR": str(tmp_path)})
    try:
        worker.send({"type": "job", "id": "long", "kind": "wait", "params": {"seconds": 60}})
        assert worker.read_until({"progress"}, timeout=10)["id"] == "long"
        folders = [p for p in tmp_path.iterdir() if p.name.startswith("gs_reconstruct_")]
        assert len(folders) == 1 and folders[0].is_dir()
        worker.proc.send_signal(signum)
        assert worker.proc.wait(timeout=5) == 128 + signum
        assert not folders[0].exists()
    finally:
        worker.close()


def test_stale_job_folders_are_swept_at_worker_start(tmp_path):
    from blender_gs_addon.worker.job_dirs import sweep_stale_job_dirs

    day = 24 * 3600
    now = time.time()
    old = tmp_path / "gs_reconstruct_old"
    (old / "capture").mkdir(parents=True)
    (old / "capture" / "view.png").write_bytes(b"x")
    recent_child = tmp_path / "gs_reconstruct_busy"  # old folder, but a job writes into it
    (recent_child / "capture").mkdir(parents=True)
    fresh = tmp_path / "gs_reconstruct_fresh"
    fresh.mkdir()
    other = tmp_path / "someone_else_old"
    other.mkdir()
    target = tmp_path / "target_old"
    target.mkdir()
    link = tmp_path / "gs_reconstruct_link"
    link.symlink_to(target, target_is_directory=True)
    plain = tmp_path / "gs_reconstruct_file"
    plain.write_bytes(b"x")
    for path in (old / "capture" / "view.png", old / "capture", old, recent_child, other,
                 target, plain):
        os.utime(path, (now - 2 * day, now - 2 * day), follow_symlinks=False)

    assert sweep_stale_job_dirs(root=tmp_path, now=now) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["gs_reconstruct_busy", "gs_reconstruct_fresh", "someone_else_old", "target_old",
         "gs_reconstruct_link", "gs_reconstruct_file"])
    # A day later the busy and fresh ones are stale too; the link and its target survive.
    assert sorted(p.name for p in sweep_stale_job_dirs(root=tmp_path, now=now + 2 * day)) == [
        "gs_reconstruct_busy", "gs_reconstruct_fresh"]
    assert target.is_dir() and link.is_symlink()

    # The real worker does it when it starts, in the temporary directory it is given.
    leftover = tmp_path / "gs_reconstruct_crash"
    leftover.mkdir()
    os.utime(leftover, (now - 2 * day, now - 2 * day))
    worker = _RawWorker(env={"TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 5
        while leftover.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not leftover.exists() and target.is_dir()
    finally:
        worker.close()


# ------------------------------------------------------- fault injection: the worker survives
def _errors_then_alive(raw, count: int, *, timeout: float = 10.0) -> list[dict]:
    """The next ``count`` error replies, then proof the worker still serves a job."""
    errors = [raw.read_until({"error"}, timeout=timeout) for _ in range(count)]
    raw.send({"type": "job", "id": "alive", "kind": "wait", "params": {"seconds": 0.05}})
    assert raw.read_until({"result", "error"}, timeout=timeout) == {
        "type": "result", "id": "alive", "outputs": {"waited": 0.05}}
    return errors


def test_hostile_lines_get_one_error_each_and_the_worker_keeps_serving(raw):
    from blender_gs_addon.worker.protocol import MAX_LINE

    hostile = [b"[" * 100_000, b"{" * 100_000, b"x" * (3 * MAX_LINE), b"\xff\xfe",
               b"[1, 2]", b'{"type": "job"}', b'{"type": "job", "id": "j", "kind": "wait", '
               b'"params": {"seconds": NaN}}', b'{"type": "job", "id": ["j"], "kind": "wait"}',
               b'{"type": "job", "id": "j2", "kind": "wait", "params": 7, "files": 5}']
    raw.proc.stdin.write(b"".join(line + b"\n" for line in hostile))
    raw.proc.stdin.flush()
    errors = _errors_then_alive(raw, len(hostile))
    assert [e["error_type"] for e in errors] == ["ProtocolError"] * 7 + ["ProtocolError",
                                                                         "InvalidParameters"]
    assert "nested too deeply" in errors[0]["message"]
    assert f"{3 * MAX_LINE:,} bytes exceeds" in errors[2]["message"]
    assert "NaN is not a JSON number" in errors[6]["message"]
    assert "params must be an object" in errors[8]["message"]
    # A line that never ends is skipped in pieces too: the worker's memory stays bounded.
    raw.proc.stdin.write(b"y" * (4 * MAX_LINE))
    raw.proc.stdin.write(b"\n")
    raw.proc.stdin.flush()
    assert "exceeds" in _errors_then_alive(raw, 1)[0]["message"]


@pytest.mark.parametrize("kind, params, words", [
    ("wait", {"seconds": "nan"}, "'seconds' must be a finite number"),
    ("wait", {"seconds": 1e300}, "'seconds' must be a finite number from 0 to 3600"),
    ("wait", {"cancellable": "yes"}, "'cancellable' must be true or false"),
    ("reconstruct", {"steps": "abc"}, "'steps' must be a whole number"),
    ("reconstruct", {"backend": "nerf"}, "'backend' must be one of fit, lgm, lgm+fit"),
    ("reconstruct", {"colour": "red"}, "unknown parameter 'colour'"),
    ("reconstruct", {"capture": "/etc"}, "unknown parameter 'capture'"),
    ("reconstruct", {"output": "../x.ply"}, "'output' must be splats.ply"),
    ("reconstruct", {}, "input files must hold a data set under capture/"),
    ("render", {"K": [[1, 0], [0, 1]]}, "'viewmat' is missing"),
    ("render", {"viewmat": [[1, 0, 0, 0]] * 4, "K": [[1, 0], [0, 1]]}, "'K' must be a 3×3"),
    ("render", {"viewmat": [[1, 0, 0, 0]] * 4, "K": [[1, 0, 0]] * 3, "width": 0},
     "'width' must be a whole number from 1"),
    ("nope", {}, "unknown job kind 'nope'"),
])
def test_invalid_job_parameters_are_named_before_work_starts(client, kind, params, words):
    start = time.monotonic()
    with pytest.raises(GSError, match=re.escape(words)) as err:
        client.run(kind, params, timeout=20)
    assert f"{kind} job" in str(err.value) or kind == "nope"
    assert time.monotonic() - start < 2.0  # refused at once, nothing ran
    assert client.run("wait", {"seconds": 0.05}, timeout=20) == {"waited": 0.05}


def test_damaged_input_transfers_are_refused_and_cleaned_up(raw, tmp_path):
    import base64
    import hashlib

    payload = b"0123456789" * 1000
    good = hashlib.sha256(payload).hexdigest()
    files = [{"path": "capture/transforms_train.json", "size": len(payload)}]

    def job(job_id, manifest, data, size, sha):
        raw.send({"type": "job", "id": job_id, "kind": "reconstruct", "params": {},
                  "files": manifest, "size": sum(f["size"] for f in manifest)},
                 {"type": "data", "id": job_id, "data": base64.b64encode(data).decode()},
                 {"type": "data_end", "id": job_id, "size": size, "sha256": sha})
        return raw.read_until({"error", "result", "cancelled"}, timeout=10)

    bad_sum = job("a", files, payload, len(payload), "0" * 64)
    assert bad_sum["error_type"] == "TransferError" and "SHA-256 mismatch" in bad_sum["message"]
    short = job("b", files, payload[:-5], len(payload) - 5, good)
    assert "ended after 9,995 of 10,000 bytes" in short["message"]
    long = job("c", files, payload + b"!", len(payload) + 1, good)
    assert "more data than the 10,000 bytes announced" in long["message"]
    escape = job("d", [{"path": "capture/../../outside.json", "size": 10}], payload[:10], 10,
                 good)
    assert "not a plain relative path" in escape["message"]
    raw.send({"type": "data", "id": "c", "data": "AAAA"})  # the rest of a refused transfer
    _errors_then_alive(raw, 0)
    assert not (tmp_path.parent / "outside.json").exists()


def test_results_that_hold_nan_or_inf_stay_valid_json(client, tmp_path):
    """The reliability case: held-out views that see nothing give PSNR = inf, which used to
    abort the worker (SIGABRT) after it wrote the .ply. Now: psnr null and a note."""
    from fakes import write_torus_dataset

    from blender_gs_addon.worker.transfer import dataset_bundle

    folder = write_torus_dataset(tmp_path / "ds", train=6, test=2, test_views_see_nothing=True)
    result = client.run("reconstruct", {"steps": 2, "device": "cpu"}, timeout=300,
                        upload=dataset_bundle(folder), download_dir=tmp_path / "out")
    assert result["psnr"] is None and result["psnr_note"] == "the held-out views see no splats"
    assert result["ssim"] == pytest.approx(1.0) and result["test_views"] == 2
    from blender_gs_addon.formats import read_splats

    assert read_splats(result["splats"]).count == result["count"] > 0
    assert client.alive and client.run("wait", {"seconds": 0.05}, timeout=20) == {
        "waited": 0.05}
    from blender_gs_addon.reconstruction.pipeline import held_out_summary

    assert held_out_summary(result) == "held-out PSNR n/a (the held-out views see no splats)"


def test_cli_reconstruct_json_holds_null_psnr(tmp_path):
    import json

    from fakes import write_torus_dataset

    folder = write_torus_dataset(tmp_path / "ds", train=6, test=2, test_views_see_nothing=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-m", "blender_gs_addon", "reconstruct", "--capture",
                          str(folder), "--steps", "2", "--device", "cpu", "--out",
                          str(tmp_path / "s.ply"), "--json"], capture_output=True, text=True,
                         cwd=root, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])  # strict JSON: no Infinity
    assert summary["psnr"] is None and summary["psnr_note"].endswith("see no splats")


def test_stopped_worker_is_detected_by_its_heartbeat_within_seconds():
    """SIGSTOP freezes the worker, pipes open: only the missing heartbeat tells."""
    c = WorkerClient(heartbeat_timeout=2.0)
    pid = c.info["pid"]
    job = c.submit("wait", {"seconds": 60})
    time.sleep(0.5)
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    try:
        with pytest.raises(GSError, match=r"has sent nothing for 2\.\d s.*stopped or hangs"):
            job.wait(timeout=30)
        took = time.monotonic() - start
        assert 2.0 <= took < 3.0, took
        print(f"heartbeat: a stopped worker was detected after {took:.2f} s")
        assert not c.alive and c.proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        c.close()


def test_an_idle_stopped_worker_is_replaced_not_reused():
    c = WorkerClient(heartbeat_timeout=1.0)
    assert c.alive
    os.kill(c.info["pid"], signal.SIGSTOP)
    time.sleep(1.3)
    assert not c.alive  # a warm worker that froze is given up before the next job
    with pytest.raises(GSError, match="has sent nothing"):
        c.submit("wait", {"seconds": 0.1})
    c.close()
