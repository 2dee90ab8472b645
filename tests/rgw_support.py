"""A real Ceph RADOS Gateway for tests: one monitor, one in-memory OSD and RGW serving HTTPS on 127.0.0.1.

Everything (config, monitor store, sockets, logs, TLS files) lives under one directory; every
daemon runs under ``setpriv --pdeathsig KILL``, so none outlives the process that started it,
and :meth:`CephRGW.stop` ends them in order. The packages come from Debian
(``bash scripts/ceph.sh install``); without them the fixture skips and says so.

By hand: ``bash scripts/ceph.sh start DIR`` (see infra/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from gupper_infra.client import boto3_kwargs, public_url, s3_env
from gupper_infra.tls import ensure_tls_material

# Binaries of the Debian packages radosgw, ceph-mon, ceph-osd, ceph-common (and util-linux's setpriv).
NEEDED = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "setpriv")
INSTALL_HINT = "install Ceph with 'bash scripts/ceph.sh install' (apt: radosgw ceph-mon ceph-osd ceph-common)"
ACCESS_KEY = "gupper-rgw-test"
SECRET_KEY = "gupper-rgw-test-secret-not-a-secret"  # a throwaway user of a throwaway in-memory cluster
REGION = "us-east-1"
STEP_TIMEOUT = 60.0
MEMSTORE_BYTES = 1 << 30


class CephError(RuntimeError):
    """The cluster could not be started; the message ends with the tail of the failing daemon's log."""


def missing_binaries() -> list[str]:
    """The Ceph programs not on PATH (empty when the cluster can be started)."""
    return [name for name in NEEDED if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class CephRGW:
    """A running single-node cluster with RGW; ``s3_env``/``boto3_kwargs`` as for the moto local store."""

    state_dir: Path
    s3_endpoint: str
    ca: str
    conf: Path
    bucket: str = "gupper"
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    ops_log: Path | None = None  # RGW's ops log (JSON lines), when started with ops_log=True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def public_base(self) -> str:
        """RGW serves anonymous reads on the same HTTPS port (path-style): ``https://127.0.0.1:P/<bucket>``."""
        return f"{self.s3_endpoint}/{self.bucket}"

    def url(self, key: str) -> str:
        """The public (anonymous) URL of ``key`` in the bucket."""
        return public_url(self, key)

    def s3_env(self) -> dict[str, str]:
        """Environment for a publisher subprocess (boto3's standard variables); merge into ``os.environ``."""
        return s3_env(self)

    def boto3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return boto3_kwargs(self)

    def log(self, name: str) -> Path:
        """The log file of daemon ``name`` (``mon``, ``osd``, ``rgw``)."""
        return self.state_dir / "log" / f"{name}.out"

    def stop(self, timeout: float = 15.0) -> None:
        """End the daemons, clients first (RGW, OSD, monitor), SIGKILL for any that linger. Idempotent.

        RGW gets SIGKILL at once: it holds no state of its own (objects live in the OSD's memory, which
        goes too) and spends 5 s draining connections on SIGTERM.
        """
        for name in ("rgw", "osd", "mon"):
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGKILL if name == "rgw" else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def __enter__(self) -> CephRGW:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _conf(
    base: Path, fsid: str, mon_port: int, rgw_port: int, tls_cert: Path, tls_key: Path, ops_log: Path | None = None
) -> str:
    # Ports for the OSD's messengers: Ceph takes the first free ones in this range.
    low = random.randrange(20000, 30000, 100)
    # RGW's own access log: one JSON object per request, in a file (not in RADOS, where it would
    # need radosgw-admin to read back).
    ops = (
        f"rgw_enable_ops_log = true\nrgw_ops_log_rados = false\nrgw_ops_log_file_path = {ops_log}\n"
        if ops_log is not None
        else ""
    )
    return f"""[global]
fsid = {fsid}
mon_host = v1:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_msgr2 = false
ms_bind_port_min = {low}
ms_bind_port_max = {low + 99}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# One OSD: pools of size 1, CRUSH placing on OSDs directly, few placement groups.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
# The 1 s default makes every map change (each pool RGW creates) wait a second.
paxos_propose_interval = 0.05
mon_osd_report_timeout = 30
osd_objectstore = memstore
memstore_device_bytes = {MEMSTORE_BYTES}
# With auth off these updates fail the OSD's start with "wrong fsid"; the CRUSH entry is added by hand.
osd_crush_update_on_start = false
osd_class_update_on_start = false
run_dir = {base}/run
admin_socket = {base}/run/$name.asok
pid_file = {base}/run/$name.pid
log_file = {base}/log/$name.log
mon_data = {base}/mon/$name
osd_data = {base}/osd/$name
crash_dir = {base}/crash
exchange_dir = {base}/run
log_to_stderr = false
err_to_stderr = true

[client.rgw.gupper]
rgw_frontends = beast ssl_endpoint=127.0.0.1:{rgw_port} ssl_certificate={tls_cert} ssl_private_key={tls_key}
rgw_dns_name = 127.0.0.1
rgw_data = {base}/rgw
rgw_enable_usage_log = false
{ops}"""


class _Starter:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.conf = base / "ceph.conf"

    def run(self, *cmd: str, timeout: float = STEP_TIMEOUT) -> str:
        """A one-shot Ceph command; its failure becomes a CephError with its output."""
        try:
            proc = subprocess.run([*cmd], capture_output=True, text=True, timeout=timeout, check=False, cwd=self.base)
        except subprocess.TimeoutExpired as e:
            raise CephError(f"{' '.join(cmd)} did not finish in {timeout:g} s") from e
        if proc.returncode != 0:
            raise CephError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def ceph(self, *args: str) -> str:
        """A command to the monitor. ``--connect-timeout`` waits for it to answer, but a monitor that
        answers before it has settled refuses the command table the client asks for first ("EPERM:
        problem getting command descriptions from mon"), at the first command or a later one: nothing
        was sent, so ask again, until the step's deadline."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                return self.run("ceph", "-c", str(self.conf), "--connect-timeout", str(int(STEP_TIMEOUT)), *args)
            except CephError as e:
                if "problem getting command descriptions" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(0.25)  # the monitor gives no sign when it is ready: poll, bounded by the deadline

    def daemon(self, name: str, cmd: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start a daemon in the foreground under setpriv: it gets SIGKILL when this process dies."""
        log = (self.base / "log" / f"{name}.out").open("ab")
        with log:
            return subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.base,
            )


def _wait_for_https(port: int, ca: Path, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    """Until RGW completes a TLS handshake on ``port`` (bounded by ``deadline``)."""
    context = ssl.create_default_context(cafile=str(ca))
    while True:
        if proc.poll() is not None:
            raise CephError(f"radosgw exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise CephError(f"radosgw did not answer on port {port} within {STEP_TIMEOUT:g} s:\n{_tail(log)}")
        time.sleep(0.05)  # polling a port that is not open yet: nothing else tells us when it opens


def start_ceph_rgw(base: Path, *, bucket: str = "gupper", ops_log: bool = False) -> CephRGW:
    """Start a single-node cluster and RGW under ``base`` (created), make a user, and return it running.

    The bucket is not created: ``gupper-publish init`` or the caller does that. ``ops_log`` turns on
    RGW's access log (the ops log, JSON lines) in :attr:`CephRGW.ops_log`.
    """
    missing = missing_binaries()
    if missing:
        raise CephError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
    base = base.resolve()
    for sub in ("run", "log", "mon", "osd", "crash", "rgw", "tls"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    tls = ensure_tls_material(base / "tls")
    fsid, mon_port, rgw_port = str(uuid.uuid4()), _free_port(), _free_port()
    s = _Starter(base)
    ops_path = base / "log" / "ops.log" if ops_log else None
    s.conf.write_text(_conf(base, fsid, mon_port, rgw_port, tls.server_cert, tls.server_key, ops_path))
    rgw = CephRGW(base, f"https://127.0.0.1:{rgw_port}", str(tls.ca_cert), s.conf, bucket, ops_log=ops_path)
    try:
        s.run(
            "monmaptool", "--create", "--addv", "a", f"[v1:127.0.0.1:{mon_port}]", "--fsid", fsid, str(base / "monmap")
        )
        s.run("ceph-mon", "-c", str(s.conf), "--mkfs", "-i", "a", "--monmap", str(base / "monmap"))
        rgw.processes["mon"] = s.daemon("mon", ["ceph-mon", "-c", str(s.conf), "-i", "a", "-f"])
        osd_uuid = str(uuid.uuid4())
        osd_id = s.ceph("osd", "create", osd_uuid).strip()  # waits for the monitor to form a quorum
        (base / "osd" / f"osd.{osd_id}").mkdir(exist_ok=True)
        s.run("ceph-osd", "-c", str(s.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        s.ceph("osd", "crush", "add", f"osd.{osd_id}", "1.0", "root=default")
        rgw.processes["osd"] = s.daemon("osd", ["ceph-osd", "-c", str(s.conf), "-i", osd_id, "-f"])
        # Blocks until the OSD is up and RGW's pools are writable: the user is stored in them.
        s.run(
            "radosgw-admin",
            "-c",
            str(s.conf),
            "-n",
            "client.rgw.gupper",
            "user",
            "create",
            "--uid",
            "gupper",
            "--display-name",
            "Gupper tests",
            "--access-key",
            ACCESS_KEY,
            "--secret",
            SECRET_KEY,
        )
        rgw.processes["rgw"] = s.daemon("rgw", ["radosgw", "-c", str(s.conf), "-n", "client.rgw.gupper", "-f"])
        _wait_for_https(rgw_port, tls.ca_cert, rgw.processes["rgw"], rgw.log("rgw"), time.monotonic() + STEP_TIMEOUT)
    except BaseException as e:
        rgw.stop()
        if isinstance(e, CephError):
            daemons = "\n".join(f"--- {n} log:\n{_tail(rgw.log(n), 8)}" for n in rgw.processes)
            raise CephError(f"{e}\n{daemons}") from e
        raise
    return rgw


def rgw_cluster(base: Path, *, ops_log: bool = False) -> Iterator[CephRGW]:
    """For a pytest fixture: a running cluster under ``base`` (``ops_log``: with RGW's access log on), stopped
    afterwards; a skip naming the install command without Ceph."""
    import pytest

    missing = missing_binaries()
    if missing:
        pytest.skip(f"Ceph RGW is not installed (no {', '.join(missing)}): {INSTALL_HINT}")
    with start_ceph_rgw(base, ops_log=ops_log) as rgw:
        yield rgw


def _stdin_can_close() -> bool:
    """Whether stdin is something whose end means "stop": a terminal (Ctrl-D) or a pipe (its writer went away)."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return os.isatty(0) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _until_eof(stop: threading.Event) -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 65536):
            pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.rgw_support --state-dir DIR``: run the cluster until Ctrl-C or SIGTERM, or until stdin
    closes when it is a terminal or a pipe (Ctrl-D; a parent that let go). Started with stdin from
    ``/dev/null`` or a file, as a background job is, it stays up (it read EOF there at once and stopped)."""
    parser = argparse.ArgumentParser(
        description="Run a throwaway single-node Ceph RGW (HTTPS on 127.0.0.1) for trying Gupper against."
    )
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="an empty directory for config, data, logs and TLS files"
    )
    parser.add_argument(
        "--bucket",
        default="gupper",
        help="bucket name printed in the READY line (create it with 'gupper-publish init')",
    )
    args = parser.parse_args(argv)
    try:
        rgw = start_ceph_rgw(args.state_dir, bucket=args.bucket)
    except CephError as e:
        print(f"ceph: error: {e}", file=sys.stderr)
        return 1
    with rgw:
        print(
            "GUPPER-RGW-READY "
            + json.dumps(
                {"s3_endpoint": rgw.s3_endpoint, "public_base": rgw.public_base, "ca": rgw.ca, **rgw.s3_env()}
            ),
            flush=True,
        )
        for name, value in rgw.s3_env().items():
            if name.startswith("AWS_"):
                print(f"export {name}={value}", flush=True)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if _stdin_can_close():
            threading.Thread(target=_until_eof, args=(stop,), name="stdin-watch", daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
