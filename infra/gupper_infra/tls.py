"""TLS material for the local store: a private CA and a server certificate.

Everything lives in the store's state directory so that a restarted store keeps
the same CA, and clients that were given ``ca.pem`` keep trusting it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from filelock import FileLock

from gupper_infra import CA_CERT_FILE

CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
LOCK_FILE = ".tls.lock"

DEFAULT_IDENTITIES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the TLS material in a state directory."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, state_dir: Path) -> TLSFiles:
        """The standard file names inside ``state_dir``."""
        return cls(
            ca_cert=state_dir / CA_CERT_FILE,
            ca_key=state_dir / CA_KEY_FILE,
            server_cert=state_dir / SERVER_CERT_FILE,
            server_key=state_dir / SERVER_KEY_FILE,
        )


def write_file_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``.

    Readers never see a half-written file, and a key file is never readable by
    others, not even briefly (the mode is set before any byte is written).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), mode)
    try:
        if os.name == "posix":
            os.fchmod(fd, mode)  # the umask may have narrowed or the file pre-existed (Windows has no modes to set)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def normalize_identity(name: str) -> str:
    """Canonical spelling of a host name or IP address, as found in a certificate."""
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return name.lower()


@contextlib.contextmanager
def _state_lock(state_dir: Path) -> Iterator[None]:
    # Two stores started at once on one state dir must not both mint a CA.
    with FileLock(state_dir / LOCK_FILE):  # flock on POSIX, msvcrt.locking on Windows
        yield


def _tighten_mode(path: Path) -> None:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def _load_ca(files: TLSFiles) -> trustme.CA | None:
    if not (files.ca_cert.is_file() and files.ca_key.is_file()):
        return None
    _tighten_mode(files.ca_key)
    return trustme.CA.from_pem(files.ca_cert.read_bytes(), files.ca_key.read_bytes())


def _create_ca(files: TLSFiles) -> trustme.CA:
    ca = trustme.CA(organization_name="Gupper local store")
    # Key first: a ca.pem on disk then always has its key beside it.
    write_file_atomic(files.ca_key, ca.private_key_pem.bytes(), 0o600)
    write_file_atomic(files.ca_cert, ca.cert_pem.bytes(), 0o644)
    return ca


def _leaf_is_usable(files: TLSFiles, identities: Sequence[str]) -> bool:
    """True if the stored server cert was issued by the CA, is valid now, covers
    every identity and matches the stored key."""
    if not (files.server_cert.is_file() and files.server_key.is_file()):
        return False
    try:
        leaf = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        leaf.verify_directly_issued_by(ca_cert)
        key = load_pem_private_key(files.server_key.read_bytes(), password=None)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return False
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != leaf.public_key().public_bytes(*raw):
        return False
    names = {normalize_identity(n) for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return {normalize_identity(i) for i in identities} <= names


def ensure_tls_material(state_dir: Path, identities: Sequence[str] = DEFAULT_IDENTITIES) -> TLSFiles:
    """Load or create the CA and a server certificate for ``identities``.

    An existing CA is always reused. The server certificate is reused when it still
    fits (same CA, valid, covers every identity, matching key) and re-issued from
    the same CA otherwise. Key files are kept at mode 0600.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TLSFiles.in_dir(state_dir)
    with _state_lock(state_dir):
        ca = _load_ca(files)
        fresh_ca = ca is None
        if ca is None:
            ca = _create_ca(files)
        if fresh_ca or not _leaf_is_usable(files, identities):
            leaf = ca.issue_cert(*identities, common_name=identities[0])
            write_file_atomic(files.server_key, leaf.private_key_pem.bytes(), 0o600)
            chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
            write_file_atomic(files.server_cert, chain, 0o644)
        _tighten_mode(files.server_key)
    return files


def server_ssl_context(files: TLSFiles) -> ssl.SSLContext:
    """A server-side context presenting the store's certificate (TLS 1.2+)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.server_cert, files.server_key)
    return ctx
