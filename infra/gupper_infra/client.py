"""Start and stop a local store (``python -m gupper_infra.localstore``) from Python.

Used by the tests and the demo. This module does not import moto, so importing
it costs nothing: the store runs in its own process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol
from urllib.parse import quote

from gupper_infra import DEFAULT_BUCKET, READY_PREFIX

# The directory holding the ``infra`` package, so ``-m gupper_infra.localstore`` imports
# from any working directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # infra/, the folder holding gupper_infra
STDERR_LOG_NAME = "localstore.log"
_STDERR_TAIL_CHARS = 8000


class LocalStoreError(RuntimeError):
    """The store process died or did not become ready in time."""


class S3Server(Protocol):
    """What a running S3-compatible server hands a client: the moto store here, Ceph RGW in the tests."""

    @property
    def s3_endpoint(self) -> str: ...
    @property
    def public_base(self) -> str: ...
    @property
    def ca(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...


def public_url(server: S3Server, key: str) -> str:
    """The public (anonymous) URL of ``key`` (a plain key: it is percent-encoded here)."""
    return f"{server.public_base}/{quote(key.lstrip('/'), safe='/')}"


def s3_env(server: S3Server) -> dict[str, str]:
    """Environment variables a publisher subprocess needs to reach ``server``.

    Merge them into a copy of ``os.environ``. NO_PROXY covers loopback so a
    proxy configured on the machine is not asked to reach 127.0.0.1.
    """
    no_proxy = ",".join(
        part for part in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1,localhost,::1") if part
    )
    return {
        "AWS_ENDPOINT_URL": server.s3_endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
        "AWS_CA_BUNDLE": server.ca,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


def boto3_kwargs(server: S3Server) -> dict[str, Any]:
    """Keyword arguments for ``boto3.client("s3", **kwargs)`` against ``server``."""
    return {
        "endpoint_url": server.s3_endpoint,
        "aws_access_key_id": server.access_key,
        "aws_secret_access_key": server.secret_key,
        "region_name": server.region,
        "verify": server.ca,
    }


@dataclass
class LocalStore:
    """A running local store; the fields are those of its READY line."""

    s3_endpoint: str
    public_base: str
    bucket: str
    ca: str
    region: str
    access_key: str
    secret_key: str
    pid: int
    state_dir: Path
    stderr_log: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def ca_path(self) -> Path:
        """``ca`` as a Path."""
        return Path(self.ca)

    def url(self, key: str) -> str:
        """The public (anonymous) URL of ``key`` (a plain key: it is percent-encoded here)."""
        return public_url(self, key)

    def s3_env(self) -> dict[str, str]:
        """Environment for a publisher subprocess: :func:`s3_env`."""
        return s3_env(self)

    def boto3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return boto3_kwargs(self)

    def stderr_text(self) -> str:
        """The store's stderr so far (its log file), for error messages."""
        return _tail(self.stderr_log)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the store, wait up to ``timeout`` s, then SIGKILL; return its exit code.

        Safe to call more than once.
        """
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        if self._pump is not None:
            self._pump.join(timeout=timeout)
        return proc.returncode

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-_STDERR_TAIL_CHARS:]


def _pump_stdout(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Forward stdout lines until the READY line, then keep draining so the
    store can never block on a full pipe. ``None`` marks EOF."""
    forwarding = True
    try:
        for raw in stream:
            if forwarding:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                lines.put(line)
                forwarding = not line.startswith(READY_PREFIX)
    except (OSError, ValueError):
        pass  # stop() closed the pipe
    finally:
        lines.put(None)


def start_local_store(
    state_dir: Path,
    *,
    bucket: str = DEFAULT_BUCKET,
    access_log: Path | None = None,
    timeout: float = 30.0,
    extra_args: list[str] | None = None,
    keep_objects: bool = False,
) -> LocalStore:
    """Spawn ``python -m gupper_infra.localstore`` and wait until it is ready.

    On free ports (unless ``extra_args`` name them), and with objects in memory only unless
    ``keep_objects``: tests and demos start from an empty store, side by side.

    The store's stderr goes to ``state_dir/localstore.log`` (a file rather than a
    pipe nobody reads, which could fill up and stall it). Its stdin is a pipe that
    stays open while this process lives: if this process dies, the store exits.

    Raises ``LocalStoreError`` (with the store's stderr) if it exits or does not
    print its READY line within ``timeout`` seconds.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    stderr_log = state_dir / STDERR_LOG_NAME
    cmd = [
        sys.executable,
        "-m",
        "gupper_infra.localstore",
        "--state-dir",
        str(state_dir),
        "--bucket",
        bucket,
        "--exit-on-stdin-eof",
        "--s3-port",
        "0",
        "--public-port",
        "0",
    ]
    if not keep_objects:
        cmd.append("--in-memory")
    if access_log is not None:
        cmd += ["--access-log", str(Path(access_log).resolve())]
    cmd += extra_args or []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    with open(stderr_log, "ab") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    pump = threading.Thread(
        target=_pump_stdout,
        args=(proc.stdout, lines),
        name="localstore-stdout",
        daemon=True,
    )
    pump.start()
    other: list[str] = []  # stray stdout lines, shown if start-up fails

    def fail(reason: str) -> LocalStoreError:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        pump.join(timeout=5.0)
        return LocalStoreError(
            f"local store {reason} (exit code {proc.returncode}); command: {cmd}\n"
            f"--- stdout ---\n" + "\n".join(other) + "\n"
            f"--- stderr ({stderr_log}) ---\n{_tail(stderr_log)}"
        )

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise fail(f"did not become ready within {timeout:g} s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue  # the deadline check above raises
        if line is None:
            raise fail("exited before becoming ready")
        if line.startswith(READY_PREFIX):
            break
        other.append(line)

    try:
        info = json.loads(line[len(READY_PREFIX) :])
        return LocalStore(
            s3_endpoint=info["s3_endpoint"],
            public_base=info["public_base"],
            bucket=info["bucket"],
            ca=info["ca"],
            region=info["region"],
            access_key=info["access_key"],
            secret_key=info["secret_key"],
            pid=int(info["pid"]),
            state_dir=state_dir,
            stderr_log=stderr_log,
            process=proc,
            _pump=pump,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise fail(f"printed a bad READY line ({exc}): {line!r}") from exc
