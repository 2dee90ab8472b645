"""One Ed25519 signature check, by libsodium through PyNaCl.

PyNaCl's public API (``nacl.signing``) imports every binding PyNaCl has (boxes, AEADs, password
hashing, secret streams, ...) to check a signature: about 12 ms of every start (bench item 13),
for one libsodium function. Gupper calls that function, ``crypto_sign_open``, from PyNaCl's own
compiled module as PyNaCl's binding does (after ``sodium_init``, as PyNaCl's import does). Should a
PyNaCl release no longer have it there, the check goes through ``nacl.signing``: the same libsodium
call, only slower to import.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SIGNATURE_BYTES", "KEY_BYTES", "verify"]

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


_VERIFY: Verifier = _direct() or _through_pynacl


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is the Ed25519 signature of ``data`` by the raw 32-byte key ``public``.

    libsodium refuses non-canonical signatures and small-order keys. A key or signature of another
    length is False, never an error.
    """
    if len(public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    return _VERIFY(bytes(public), bytes(signature), bytes(data))
