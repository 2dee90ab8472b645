"""gupper.ed25519: libsodium's Ed25519 check (``crypto_sign_open``) called from PyNaCl's compiled module gives
the same answer as PyNaCl's public API for valid, altered, malleable and malformed input, and the
public API takes over when that module lacks the function. What it saves at start-up is bench
item 13; that a no-update start never imports ``nacl.signing`` is tests/test_lazy_imports.py."""

from __future__ import annotations

import os
import random
import sys
import types

import pytest
from nacl.signing import SigningKey

from gupper import ed25519

# The order of Ed25519's base point: S and S + L are the same scalar, so only a check that refuses a
# non-canonical S (S >= L) stops a signature from being altered into another valid-looking one.
L = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_KEY = bytes([1]) + bytes(31)  # the identity point: every signature "verifies" without the check


def paths() -> list[ed25519.Verifier]:
    return [ed25519._loaded(), ed25519._through_pynacl]


def test_this_pynacl_is_checked_through_its_compiled_module() -> None:
    assert ed25519._loaded() is not ed25519._through_pynacl  # the fast path is the one measured


def test_both_paths_agree_on_valid_and_altered_signatures() -> None:
    rng = random.Random(24)
    for n in range(200):
        key = SigningKey(rng.randbytes(32))
        data = rng.randbytes(rng.randrange(0, 3000))
        signature = key.sign(data).signature
        public = bytes(key.verify_key)
        cases = [(signature, data, True)]
        bad = bytearray(signature)
        bad[rng.randrange(64)] ^= 1 << rng.randrange(8)
        cases.append((bytes(bad), data, False))
        if data:
            changed = bytearray(data)
            changed[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            cases.append((signature, bytes(changed), False))
        for sig, message, valid in cases:
            answers = {check(public, sig, message) for check in paths()}
            assert answers == {valid}, (n, valid)
            assert ed25519.verify(public, sig, message) is valid


def test_a_malleated_s_and_a_small_order_key_are_refused() -> None:
    key = SigningKey(bytes(range(32)))
    data = b'{"serial": 7}'
    signature = key.sign(data).signature
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert s + L < 2**256
    for check in paths():
        assert check(bytes(key.verify_key), signature, data)
        assert not check(bytes(key.verify_key), malleated, data)
        assert not check(SMALL_ORDER_KEY, bytes(64), data)
        assert not check(SMALL_ORDER_KEY, signature, data)


@pytest.mark.parametrize(("key_len", "sig_len"), [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)])
def test_other_lengths_are_false_not_an_error_or_a_read_past_the_end(key_len: int, sig_len: int) -> None:
    key = SigningKey(bytes(32))
    data = b"x"
    signature = key.sign(data).signature
    public = bytes(key.verify_key)
    assert ed25519.verify((public * 2)[:key_len], (signature * 2)[:sig_len], data) is False


def test_a_pynacl_without_the_function_in_its_compiled_module_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    for lib in (types.SimpleNamespace(), types.SimpleNamespace(crypto_sign_open=len)):
        monkeypatch.setitem(sys.modules, "nacl._sodium", types.SimpleNamespace(ffi=None, lib=lib))
        assert ed25519._direct() is None
    failing = types.SimpleNamespace(crypto_sign_open=len, sodium_init=lambda: -1)
    monkeypatch.setitem(sys.modules, "nacl._sodium", types.SimpleNamespace(ffi=None, lib=failing))
    assert ed25519._direct() is None  # libsodium could not initialise: PyNaCl's own path says so
    monkeypatch.setitem(sys.modules, "nacl._sodium", None)  # import fails
    assert ed25519._direct() is None
    monkeypatch.setattr(ed25519, "_loaded", lambda: ed25519._through_pynacl)
    key = SigningKey(os.urandom(32))
    assert ed25519.verify(bytes(key.verify_key), key.sign(b"d").signature, b"d")
    assert not ed25519.verify(bytes(key.verify_key), key.sign(b"d").signature, b"e")
