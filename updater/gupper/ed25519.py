"""One Ed25519 signature check, by libsodium through PyNaCl.

PyNaCl's public API (``nacl.signing``) imports every binding PyNaCl has (boxes, AEADs, password
hashing, secret streams, ...) to check a signature: about 12 ms of every start (bench item 13),
for one libsodium function. Gupper calls that function, ``crypto_sign_open``, from PyNaCl's own
compiled module as PyNaCl's binding does (after ``sodium_init``, as PyNaCl's import does). Should a
PyNaCl release no longer have it there, the check goes through ``nacl.signing``: the same libsodium
call, only slower to import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["SIGNATURE_BYTES", "KEY_BYTES", "self_check", "verify"]

KEY_BYTES = 32
SIGNATURE_BYTES = 64

Verifier = Callable[[bytes, bytes, bytes], bool]
"""``(public key, signature, data) -> valid``, given a 32-byte key and a 64-byte signature."""


def _direct() -> Verifier | None:
    """libsodium's check from PyNaCl's compiled module, or None if this PyNaCl lacks it."""
    try:
        from nacl._sodium import ffi, lib  # type: ignore[import-not-found]  # compiled, no stubs: see the docstring
    except ImportError:
        return None
    check = getattr(lib, "crypto_sign_open", None)
    init = getattr(lib, "sodium_init", None)
    if check is None or init is None or init() < 0:  # 0 or 1: initialised now or before; -1: unusable
        return None

    def verify(public: bytes, signature: bytes, data: bytes) -> bool:
        # Lengths are checked by verify() below: libsodium reads a 32-byte key and a 64-byte signature
        # at the head of the signed message; the message it writes back is not needed.
        signed = signature + data
        message = ffi.new("unsigned char[]", len(signed))
        length = ffi.new("unsigned long long *")
        return bool(check(message, length, signed, len(signed), public) == 0)

    return verify


def _through_pynacl(public: bytes, signature: bytes, data: bytes) -> bool:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        VerifyKey(public).verify(data, signature)
    except (BadSignatureError, ValueError):  # ValueError: a key libsodium rejects
        return False
    return True


@functools.cache
def _loaded() -> Verifier:
    """The check, libsodium loaded on first use: creating an updater, or a start that only confirms
    a trial, does not pay for it."""
    return _direct() or _through_pynacl


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is the Ed25519 signature of ``data`` by the raw 32-byte key ``public``.

    libsodium refuses non-canonical signatures and small-order keys. A key or signature of another
    length is False, never an error.
    """
    if len(public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    return _loaded()(bytes(public), bytes(signature), bytes(data))


# RFC 8032, section 7.1, TEST 1: the empty message.
_KNOWN_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
_KNOWN_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def self_check() -> None:
    """Load the check and run it on a known answer: a valid signature passes, an altered one fails.

    Raises:
        ImportError: PyNaCl or libsodium cannot be loaded in this process (a build without them).
        RuntimeError: the check gave a wrong answer.
    """
    altered = bytes([_KNOWN_SIGNATURE[0] ^ 1]) + _KNOWN_SIGNATURE[1:]
    if not verify(_KNOWN_KEY, _KNOWN_SIGNATURE, b"") or verify(_KNOWN_KEY, altered, b""):
        raise RuntimeError("the Ed25519 check gives a wrong answer on RFC 8032's test 1")
