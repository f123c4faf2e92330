"""A real clustered MQTT broker on loopback: Debian's ejabberd, its MQTT module on, N nodes.

Each node is its own Erlang VM (``erl -sname NAME@localhost ... -s ejabberd``, as
``ejabberdctl foreground`` starts it, without the packaged service or its user), with its
own config, Mnesia spool, log folder and MQTT port. The nodes find each other through an
``epmd`` of the cluster's own on a free loopback port, share a random cookie, and are
joined with ejabberd's ``join_cluster`` command. :meth:`EjabberdCluster.stop` stops every
process it started (nodes, then that epmd) and nothing else.

What the tests rely on, and what this broker does not do (docs/brokers.md): sessions and
their queued QoS 1 messages live in the cluster (a client resumes on any node), a publish
reaches subscribers on every node, a last will crosses nodes; there are no shared
subscriptions (``SharedSubscriptionAvailable: 0`` in the CONNACK, ``$share/...`` refused)
and a retained message stays on the node that received it.

mod_mqtt authenticates every client: with ``auth_method: anonymous`` any username with a
non-empty password is let in (:data:`USERNAME`, :data:`PASSWORD`).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioning.localbroker import free_port

ERL = "/usr/bin/erl"
EPMD = "/usr/bin/epmd"
USERNAME = "store-edge"
PASSWORD = "loopback"  # any non-empty password passes anonymous auth
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
MARK = "STORE_EDGE_EJABBERD_CLUSTER"  # in the environment of every process a cluster starts


class ClusterError(RuntimeError):
    """ejabberd is missing, a node did not come up, or the nodes did not join."""


def erl_libs() -> str:
    """The folder holding Debian's ejabberd-VERSION and its Erlang dependencies."""
    found = sorted(glob.glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app"))
    if not found or not Path(ERL).exists():
        raise ClusterError("ejabberd not found: install the Debian package (make setup)")
    return str(Path(found[-1]).parents[2])


@dataclass
class EjabberdNode:
    """One node: its Erlang name, its MQTT listener, its folder and process."""

    name: str  # the Erlang node name, NAME@localhost
    port: int
    workdir: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the node's VM is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The tail of the node's logs (for error messages)."""
        parts = []
        for f in ("ejabberd.log", "error.log", "erl.out"):
            path = self.workdir / f
            if path.exists():
                parts.append(f"{f}: {path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)


class EjabberdCluster:
    """``nodes`` ejabberd nodes on 127.0.0.1, joined into one cluster."""

    def __init__(self, workdir: Path, nodes: int = 2, session_expiry_s: int = 3600,
                 max_queue: int = 100_000) -> None:
        """Prepare the nodes' folders and configs in ``workdir``.

        ``session_expiry_s`` caps what a client asks for (ejabberd's own default is 5
        minutes); ``max_queue`` is the QoS 1 messages kept per offline session.
        """
        self.workdir = workdir
        self.tag = secrets.token_hex(3)  # node names unique per run: epmd is ours alone
        self.cookie = secrets.token_hex(16)
        self.epmd_port = free_port()
        self.epmd: subprocess.Popen[bytes] | None = None
        # Names resolve from this file alone: no native resolver (inet_gethost) processes.
        self.inetrc = workdir / "inetrc"
        workdir.mkdir(parents=True, exist_ok=True)
        self.inetrc.write_text('{lookup, [file]}.\n{host, {127,0,0,1}, ["localhost"]}.\n',
                               encoding="utf-8")
        self.nodes = [EjabberdNode(f"se{i + 1}_{self.tag}@localhost", free_port(),
                                   workdir / f"node{i + 1}") for i in range(nodes)]
        for node in self.nodes:
            # A fresh Mnesia spool: one left by an earlier cluster names other nodes.
            shutil.rmtree(node.workdir / "spool", ignore_errors=True)
            (node.workdir / "spool").mkdir(parents=True)
            (node.workdir / "ejabberd.yml").write_text(
                'hosts: ["localhost"]\n'
                "loglevel: warning\n"
                "auth_method: [anonymous]\n"
                "anonymous_protocol: login_anon\n"
                "listen:\n"
                f"  - port: {node.port}\n"
                f'    ip: "{node.host}"\n'
                "    module: mod_mqtt\n"
                "    backlog: 1000\n"
                "modules:\n"
                "  mod_mqtt:\n"
                f"    session_expiry: {session_expiry_s}\n"
                f"    max_queue: {max_queue}\n", encoding="utf-8")

    def _env(self, node: EjabberdNode | None) -> dict[str, str]:
        env = {**os.environ, "ERL_LIBS": erl_libs(), "ERL_EPMD_PORT": str(self.epmd_port),
               "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_CRASH_DUMP_BYTES": "0",
               "ERL_INETRC": str(self.inetrc), MARK: self.tag}
        if node is not None:
            env["EJABBERD_CONFIG_PATH"] = str(node.workdir / "ejabberd.yml")
            env["EJABBERD_LOG_PATH"] = str(node.workdir / "ejabberd.log")
        return env

    def _erl(self, name: str) -> list[str]:
        # Distribution on loopback only, through our epmd (never a system-wide one).
        return [ERL, "-sname", name, "-setcookie", self.cookie, "-noinput",
                "-start_epmd", "false", "-kernel", "inet_dist_use_interface", "{127,0,0,1}"]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start epmd and every node, wait for their MQTT ports, join them into one cluster.

        Raises:
            ClusterError: not installed, a node exited or did not listen, or a join failed
                (everything started is stopped first).
        """
        erl_libs()  # fails early, naming the package, when ejabberd is missing
        if shutil.which(EPMD) is None:
            raise ClusterError(f"{EPMD} not found: install ejabberd (make setup)")
        deadline = time.monotonic() + timeout_s
        try:
            self.epmd = subprocess.Popen(
                [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent)
            _wait_listening(self.epmd_port, deadline, self.epmd, "epmd")
            for node in self.nodes:
                with (node.workdir / "erl.out").open("wb") as out:
                    node.proc = subprocess.Popen(
                        [*self._erl(node.name), "-mnesia", "dir",
                         f'"{node.workdir / "spool"}"', "-s", "ejabberd"],
                        cwd=node.workdir, env=self._env(node), stdin=subprocess.DEVNULL,
                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                        preexec_fn=_die_with_parent)
            for node in self.nodes:
                _wait_listening(node.port, deadline, node.proc, node.name, node.log)
            first = self.nodes[0].name
            for node in self.nodes[1:]:
                self.ctl(node, "join_cluster", first, deadline=deadline)
            listed = self.ctl(self.nodes[0], "list_cluster", deadline=deadline)
            members = {m.strip("'") for m in listed.split()}
            if members != {n.name for n in self.nodes}:
                raise ClusterError(f"cluster has {sorted(members)}, not every node")
        except BaseException:
            self.stop()
            raise

    def ctl(self, node: EjabberdNode, *command: str, deadline: float | None = None) -> str:
        """Run an ``ejabberdctl`` command on ``node``; its output.

        It goes through the ``ejabberd_ctl`` module, as the ``ejabberdctl`` script does
        (the script itself would switch to the packaged service's user and cookie).

        Raises:
            ClusterError: the command failed or took too long.
        """
        left = (deadline - time.monotonic()) if deadline is not None else START_TIMEOUT_S
        args = [*self._erl(f"ctl-{secrets.token_hex(3)}@localhost"), "-hidden", "-s",
                "ejabberd_ctl", "-extra", node.name, *command]
        try:
            done = subprocess.run(args, env=self._env(None), capture_output=True,
                                  timeout=max(left, 1.0), check=False)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"ejabberdctl {' '.join(command)} timed out") from None
        out = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0:
            raise ClusterError(f"ejabberdctl {' '.join(command)} on {node.name} failed "
                               f"({done.returncode}): {out} {done.stderr.decode()[-500:]}")
        return out

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every node (the Erlang VM stops cleanly), then epmd.

        What is still there after ``timeout_s`` gets SIGKILL. Each is its own process
        group: helpers it started (erl_child_setup, inet_gethost) go with it.
        """
        for node in self.nodes:
            _signal_group(node.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            _reap(node.proc, deadline)
        _signal_group(self.epmd, signal.SIGTERM)
        _reap(self.epmd, time.monotonic() + timeout_s)
        # Erlang's port helpers (erl_child_setup, inet_gethost) put themselves in groups of
        # their own and outlive the VM for a moment: wait for them, then kill the rest.
        deadline = time.monotonic() + 2.0
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def leftovers(self) -> list[int]:
        """Processes still running that this cluster started (found by :data:`MARK`)."""
        mark = f"{MARK}={self.tag}".encode()
        found = []
        for env in Path("/proc").glob("[0-9]*/environ"):
            with contextlib.suppress(OSError):
                if mark in env.read_bytes().split(b"\0"):
                    found.append(int(env.parent.name))
        return found


def _die_with_parent() -> None:
    """In the child before exec: ask for SIGTERM when the parent dies.

    Linux ``prctl(PR_SET_PDEATHSIG)``: a killed test run leaves no cluster behind.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _signal_group(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes] | None, deadline: float) -> None:
    """Wait for ``proc`` until ``deadline``, then kill its whole group."""
    if proc is None:
        return
    try:
        proc.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # leftovers of the group, if any
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_listening(port: int, deadline: float,
                    proc: subprocess.Popen[bytes] | None, what: str,
                    log: Callable[[], str] = str) -> None:
    """Wait until 127.0.0.1:``port`` accepts, failing early if the process exited."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ClusterError(f"{what} exited {proc.returncode}: {log()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                    timeout=0.2):
            return
        time.sleep(0.05)
    raise ClusterError(f"{what} did not listen on {port} in time: {log()}")
