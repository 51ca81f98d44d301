"""A throwaway OpenSSH server on 127.0.0.1 for the remote-worker tests and benchmark.

:class:`LocalSshd` runs Debian's ``/usr/sbin/sshd`` in the foreground as a child of the caller,
with its own config file, a free port on 127.0.0.1, a host key and a client key made for the
occasion in a temporary folder, and ``AuthorizedKeysFile`` pointing at a file there
(``StrictModes no``, keys only, no PAM). :meth:`LocalSshd.command` gives the ``ssh`` command
line that reaches it (``BatchMode``, no known-hosts file, ``-F /dev/null``). Only 127.0.0.1 is
ever connected to. ``scripts/sshd_setup.sh`` installs the server binary;
:func:`unavailable_reason` says why the tests must skip when it is missing.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def unavailable_reason() -> str | None:
    """Why an sshd cannot be run here, or None."""
    if not os.path.isfile(SSHD):
        return (f"{SSHD} is missing (scripts/sshd_setup.sh installs Debian's openssh-server "
                "as root with apt-get)")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"the {tool} client is missing"
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        try:  # privilege separation needs it when sshd runs as root
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as err:
            return f"cannot create /run/sshd ({err})"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)


class LocalSshd:
    """sshd on 127.0.0.1:``port`` serving the current user with a key made in ``folder``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host_key, self.client_key = self.folder / "host_key", self.folder / "client_key"
        _keygen(self.host_key)
        _keygen(self.client_key)
        shutil.copy(f"{self.client_key}.pub", self.folder / "authorized_keys")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        for _ in range(5):  # another process may take the free port first
            self.port = _free_port()
            if self._start():
                return
        raise RuntimeError(f"sshd did not start: {self.log()}")

    def _config(self) -> Path:
        path = self.folder / "sshd_config"
        path.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}", "StrictModes no",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin prohibit-password",
            f"AllowUsers {getpass.getuser()}", f"PidFile {self.folder / 'sshd.pid'}",
            "X11Forwarding no", "AllowTcpForwarding no", "AllowAgentForwarding no",
            "PrintMotd no", "LogLevel ERROR", ""]))
        return path

    def _start(self) -> bool:
        log = open(self.folder / "sshd.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self._config())],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def command(self, remote: str, *, port: int | None = None) -> str:
        """The ssh command line that runs ``remote`` (a shell command) over there."""
        return shlex.join([
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10", "-i", str(self.client_key),
            "-p", str(port or self.port), "127.0.0.1", remote])

    def sessions(self) -> list[int]:
        """pids of the per-connection sshd processes (children of the listener)."""
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                children.append(int(entry))
        return children

    def log(self) -> str:
        try:
            return (self.folder / "sshd.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.sessions():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def copy_core(destination) -> Path:
    """A copy of the core package (``blender_gs_addon/``) in ``destination``: what a remote
    worker machine has installed. Returns ``destination``."""
    destination = Path(destination)
    source = Path(__file__).resolve().parent.parent / "blender_gs_addon"
    shutil.copytree(source, destination / "blender_gs_addon",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def worker_remote_command(core: Path, tmp: Path, python: str, *, prelude: str = "") -> str:
    """The shell command that runs the worker from the copy ``core`` with its own TMPDIR
    (``prelude``: Python run first, e.g. to hide torch)."""
    if prelude:
        run = shlex.join([python, "-c", f"{prelude}; import runpy; runpy.run_module("
                                        "'blender_gs_addon.worker', run_name='__main__')"])
    else:
        run = shlex.join([python, "-m", "blender_gs_addon.worker"])
    return (f"cd {shlex.quote(str(core))} && env TMPDIR={shlex.quote(str(tmp))} "
            f"PYTHONPATH={shlex.quote(str(core))} {run}")
