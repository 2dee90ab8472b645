"""Debian's nginx (``nginx-light``) for tests: a reverse proxy in front of a store, on 127.0.0.1, with an
access log in the format the test sets.

Started by the test with its own prefix (config, pid file, temp folders, logs) in a temp folder
(:mod:`gupper_infra.nginx`: it never outlives the test), stopped on exit. Without nginx the test
skips and names the install command (``bash scripts/nginx.sh install``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gupper_infra.nginx import INSTALL_HINT, config, free_port, nginx_binary, running

__all__ = ["COMBINED", "INSTALL_HINT", "Nginx", "nginx_binary", "reverse_proxy"]

COMBINED = (
    '\'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
    '"$http_user_agent"\''
)
"""nginx's (and Apache's) combined format, spelled out: the tests set the format themselves."""


@dataclass(frozen=True)
class Nginx:
    """A running nginx: its base URL and its access log."""

    base: str
    access_log: Path


@contextmanager
def reverse_proxy(
    prefix: Path, upstream: str, *, ca: str, cert: str, key: str, log_format: str = COMBINED
) -> Iterator[Nginx]:
    """nginx on a free 127.0.0.1 port passing every request to ``upstream`` (https, trusted through
    ``ca``), logging each to ``prefix/access.log`` in ``log_format``."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access_log = prefix / "access.log"
    conf = prefix / "nginx.conf"
    conf.write_text(
        config(
            prefix,
            port,
            cert,
            key,
            http=f"log_format fleet {log_format};\n    access_log {access_log} fleet;",
            server=f"""location / {{
            proxy_pass {upstream};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;  # the certificate names it; nginx checks names, not IP addresses
            proxy_buffering off;
            client_max_body_size 0;
        }}""",
        )
    )
    with running(prefix, conf, port):
        yield Nginx(f"https://127.0.0.1:{port}", access_log)
