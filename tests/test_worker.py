"""The worker subprocess and its client: protocol, cancel, death, version check, no orphans."""

import os
import signal
import subprocess
import sys
import time

import pytest

from blender_gs_addon import GSError
from blender_gs_addon.worker_client import WorkerClient
from blender_gs_addon.worker_protocol import decode, encode


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
    with pytest.raises(ValueError):
        encode({"type": "x", "v": float("nan")})


def test_hello_reports_environment(client):
    info = client.info
    assert info["type"] == "hello" and info["protocol"] == 1
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
        "from blender_gs_addon.worker_client import WorkerClient\n"
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
