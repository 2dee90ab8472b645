"""Run Debian's nginx (``nginx-light``) for the tests and the bench: with its own prefix, on 127.0.0.1.

The caller writes the configuration (it runs in the foreground: ``daemon off;``); this module
starts nginx with ``-p PREFIX -c CONF`` in a session of its own, under ``setpriv --pdeathsig KILL``
where that exists (so it never outlives its caller), waits until its port answers, and stops it
gracefully (SIGQUIT: the master waits for its worker and closes the logs), SIGKILL after a bound.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_HINT = "apt-get install -y nginx-light (Debian's package), or 'bash scripts/nginx.sh install'"
START_TIMEOUT = 15.0


def nginx_binary() -> str | None:
    """The nginx program, or None when it is not installed."""
    for path in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user() -> str:
    # As root nginx would run its worker as nobody, who may not read the caller's files.
    return "user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""


def config(prefix: Path, port: int, cert: Path | str, key: Path | str, *, http: str = "", server: str = "") -> str:
    """A whole nginx.conf: one worker in the foreground, its pid, error log and temp folders under
    ``prefix``, one HTTPS server on 127.0.0.1:``port``; ``http`` and ``server`` are the caller's
    directives for those blocks."""
    return f"""worker_processes 1;
daemon off;
{_user()}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {prefix}/tmp-body;
    proxy_temp_path {prefix}/tmp-proxy;
    fastcgi_temp_path {prefix}/tmp-fastcgi;
    uwsgi_temp_path {prefix}/tmp-uwsgi;
    scgi_temp_path {prefix}/tmp-scgi;
    {http}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {server}
    }}
}}
"""


@contextmanager
def running(prefix: Path, conf: Path, port: int) -> Iterator[None]:
    """nginx with ``conf`` (which must listen on 127.0.0.1:``port``) until the block ends.

    Raises:
        RuntimeError: nginx is not installed, or did not answer on its port in time (its error log says why).
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError(f"nginx is not installed: {INSTALL_HINT}")
    guard = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
    proc = subprocess.Popen(
        [*guard, binary, "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
                log = prefix / "error.log"
                raise RuntimeError(f"nginx did not start: {err}{log.read_text() if log.exists() else ''}")
            time.sleep(0.05)  # polling a port that is not open yet: nothing else tells us when it opens
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=START_TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()
