"""Signing keys as CI hands them over, never echoed, and only keys a channel's installs trust.

A real private key (from ``gupper-publish keygen``) goes through the environment of real
``gupper-publish`` processes on every error path they can reach; neither the key nor any line
or encoding of it may appear in what they print.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish import (
    LocalStore,
    PublishOptions,
    SigningKeyError,
    UntrustedKeyError,
    key_id,
    keygen,
    load_signing_keys,
    publish,
    regenerate_manifest,
    rotate_keys,
)
from gupper_publish.cli import main, redact

from .conftest import NOW
from .exe_stubs import exe_stub

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    """A fresh key pair in a tmp dir: the .key path and its PEM text."""
    key_path, _, _ = keygen(tmp_path / "keys" / "release")
    return key_path, key_path.read_text()


def build(dist: Path, version: str, platform: str = "linux-amd64") -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    path = dist / f"app-{version}-{platform}"
    path.write_bytes(exe_stub(platform, f"app {version}\n".encode() * 30))
    return path


# --- loading ---


def test_the_key_itself_in_any_ci_spelling_loads_the_same_key(key: tuple[Path, str]) -> None:
    path, pem = key
    want = key_id(load_signing_keys(str(path))[0])
    der = serialization.load_pem_private_key(pem.encode(), None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spellings = {
        "PEM": pem,
        "PEM with CRLF and blank lines around": "\r\n" + pem.replace("\n", "\r\n") + "\r\n\n",
        "PEM on one line with literal \\n": pem.replace("\n", "\\n"),
        "base64 of the PEM": base64.b64encode(pem.encode()).decode(),
        "base64 of the PEM, wrapped": "\n".join(base64.encodebytes(pem.encode()).decode().split()),
        "base64 of PKCS#8 DER": base64.b64encode(der).decode(),
        "urlsafe base64 of PKCS#8 DER without padding": base64.urlsafe_b64encode(der).decode().rstrip("="),
    }
    for what, value in spellings.items():
        assert [key_id(k) for k in load_signing_keys(value)] == [want], what


def test_several_keys_in_one_value_sign_together(tmp_path: Path, key: tuple[Path, str]) -> None:
    other, _, _ = keygen(tmp_path / "keys" / "second")
    both = key[1] + other.read_text()
    assert [key_id(k) for k in load_signing_keys(both)] == [
        key_id(load_signing_keys(str(p))[0]) for p in (key[0], other)
    ]
    assert len(load_signing_keys(f"{key[0]}{os.pathsep}{other}")) == 2


def test_a_public_key_gets_public_key_advice_not_chmod(tmp_path: Path, key: tuple[Path, str]) -> None:
    pub = key[0].with_suffix(".pub")
    pub.chmod(0o644)  # as keygen writes it: readable by all, which is fine for a public key
    with pytest.raises(SigningKeyError) as e:
        load_signing_keys(str(pub), source="--key")
    assert (
        "is a public key" in str(e.value)
        and "the .key file written beside the .pub" in str(e.value)
        and "chmod" not in str(e.value)
    )
    with pytest.raises(SigningKeyError, match="GUPPER_SIGNING_KEY holds a public key"):
        load_signing_keys(pub.read_text())
    pem_public = (
        load_signing_keys(key[1])[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningKeyError, match="GUPPER_SIGNING_KEY holds a public key"):
        load_signing_keys(pem_public.decode())


def test_other_kinds_of_private_key_are_refused_with_what_to_do(tmp_path: Path, key: tuple[Path, str]) -> None:
    private = load_signing_keys(key[1])[0]
    encrypted = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(SigningKeyError, match="is encrypted; gupper-publish signs with an unencrypted key"):
        load_signing_keys(encrypted.decode())
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SigningKeyError, match=r"holds a .*RSAPrivateKey, not an Ed25519 key"):
        load_signing_keys(rsa_pem.decode())
    if shutil.which("ssh-keygen"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True, timeout=TIMEOUT
        )
        (tmp_path / "id").chmod(0o600)
        with pytest.raises(
            SigningKeyError, match=r"is an OpenSSH private key; convert it to PKCS#8 with 'ssh-keygen -p -m PKCS8"
        ):
            load_signing_keys(str(tmp_path / "id"))
    with pytest.raises(SigningKeyError, match="holds part of a private key"):
        load_signing_keys("MC4CAQAwBQYDK2VwBCIEI PRIVATE KEY")


def test_a_path_that_is_not_there_is_named_but_key_like_text_never_is(tmp_path: Path, key: tuple[Path, str]) -> None:
    with pytest.raises(SigningKeyError, match=r"'keys/release\.key' is neither an existing key file nor a private key"):
        load_signing_keys("keys/release.key")
    body = key[1].splitlines()[1]  # an Ed25519 PEM's one base64 line: the whole PKCS#8 key (which alone would load)
    for value in (body[:30], body[:-12], "x" * 5000, key[1].replace(body, body[:-12])):
        with pytest.raises(SigningKeyError) as e:
            load_signing_keys(value)
        assert body[:16] not in str(e.value) and "x" * 20 not in str(e.value), str(e.value)


# --- never echoed: real processes, a real key in their environment ---


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-keys")) as store:
        yield store


def fragments(pem: str) -> list[str]:
    """Every form in which the key could leak: the PEM, each base64 line, the body, its encodings, the raw seed."""
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    private = load_signing_keys(pem)[0]
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = "".join(body_lines)
    return [
        pem.strip(),
        *body_lines,
        body,
        body[-24:],
        base64.b64encode(pem.encode()).decode()[:40],
        base64.b64encode(raw).decode().rstrip("="),
        raw.hex(),
        pem.replace("\n", "\\n")[30:80],
    ]


def cli(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GUPPER_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "gupper_publish", *args],
        env={**base, **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_a_key_given_as_text_appears_in_no_output_on_any_error_path(
    tmp_path: Path, running: RunningStore, key: tuple[Path, str]
) -> None:
    pem = key[1]
    pem_b64 = base64.b64encode(pem.encode()).decode()
    dist = tmp_path / "dist"
    good, later = build(dist, "1.0.0"), build(dist, "1.1.0")
    (dist / "app-2.0.0-linux-amd64").write_text("hello\n")
    (dist / "app_2.0.0").write_bytes(b"x")
    (tmp_path / "afile").write_text("not a folder\n")
    damaged = pem.replace(pem.splitlines()[1], pem.splitlines()[1][:-12])  # cut short: no longer a key
    trusted, _, _ = keygen(tmp_path / "trusted" / "k")
    folder_store = str(tmp_path / "store")
    s3 = {**running.s3_env(), "GUPPER_STORE": f"s3://{running.bucket}/leak"}
    assert (
        cli(["publish", "--key", str(trusted), "--patches", "0", str(good)], s3, tmp_path).returncode == 0
    )  # the channel trusts another key
    dead = {**s3, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    cases: list[tuple[str, list[str], dict[str, str], int]] = [
        ("no store", ["publish", str(good)], {"GUPPER_SIGNING_KEY": pem}, 1),
        (
            "bad file name",
            ["publish", "--store", folder_store, str(dist / "app_2.0.0")],
            {"GUPPER_SIGNING_KEY": pem},
            1,
        ),
        (
            "not an executable",
            ["publish", "--store", folder_store, str(dist / "app-2.0.0-linux-amd64")],
            {"GUPPER_SIGNING_KEY": pem},
            1,
        ),
        ("untrusted key, PEM", ["publish", "--patches", "0", str(later)], {**s3, "GUPPER_SIGNING_KEY": pem}, 1),
        ("untrusted key, base64", ["resign", "app"], {**s3, "GUPPER_SIGNING_KEY": pem_b64}, 1),
        ("untrusted key, --key", ["publish", "--json", "--key", pem, str(later)], s3, 1),
        ("untrusted key, --key=", ["rollout", "app", "1.0.0", "--percent", "50", f"--key={pem_b64}"], s3, 1),
        ("store down", ["publish", "--json", str(good)], {**dead, "GUPPER_SIGNING_KEY": pem}, 1),
        (
            "store under a file",
            ["publish", "--store", str(tmp_path / "afile" / "s"), str(good)],
            {"GUPPER_SIGNING_KEY": pem},
            1,
        ),
        ("damaged key in env", ["publish", "--store", folder_store, str(good)], {"GUPPER_SIGNING_KEY": damaged}, 1),
        ("damaged key as --key", ["publish", "--store", folder_store, "--key", damaged, str(good)], {}, 1),
        ("key where a path goes", ["keygen", pem], {}, 1),
        ("key where the store goes", ["publish", "--store", pem, str(good)], {"GUPPER_SIGNING_KEY": str(key[0])}, 1),
        ("misplaced --key", ["list", "--store", folder_store, "--key", pem], {"GUPPER_SIGNING_KEY": pem}, 2),
        ("unknown command word", [pem_b64, "--store", folder_store], {}, 1),
        ("bad --percent", ["rollout", "app", "1.0.0", "--percent", pem], {**s3, "GUPPER_SIGNING_KEY": pem}, 2),
        (
            "new key is the private key",
            ["rotate-keys", "app", "--new-key", pem, "--threshold", "1"],
            {**s3, "GUPPER_SIGNING_KEY": pem},
            1,
        ),
        (
            "success with --json",
            ["publish", "--json", "--store", folder_store, str(good)],
            {"GUPPER_SIGNING_KEY": pem},
            0,
        ),
    ]
    secrets = fragments(pem)
    for what, args, env, code in cases:
        proc = cli(args, env, tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == code, (what, proc.stderr)
        assert "Traceback" not in out, (what, out)
        leaked = [s for s in secrets if s in out]
        assert not leaked, (what, leaked, out)
        if code:
            assert proc.stderr.strip(), what
    assert (
        tmp_path / "store" / "app" / "stable" / "latest.json"
    ).exists()  # the successful case did sign with the key from the env


def test_the_traceback_of_a_bug_is_redacted_too(
    key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bug cannot be produced on purpose in working code: stand one in, as the error mapping sees it.
    import gupper_publish.cli as cli_module

    pem = key[1]

    def buggy(argv: list[str]) -> int:
        raise RuntimeError(f"unexpected state while handling {argv!r} and {os.environ['GUPPER_SIGNING_KEY']}")

    monkeypatch.setenv("GUPPER_SIGNING_KEY", base64.b64encode(pem.encode()).decode())
    monkeypatch.setattr(cli_module, "run", buggy)
    assert main(["publish", "--key", pem, "x"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err and "internal error (a bug)" in err
    assert not [s for s in fragments(pem) if s in err], err
    assert (
        redact("token " + pem.splitlines()[1][5:40], [pem]) == "token " + pem.splitlines()[1][5:40]
    )  # a short piece of a line is not matched ...
    assert redact(pem.splitlines()[1], [pem]) == "[redacted]"  # ... a whole line is


# --- only keys the channel's installs trust ---


def test_a_key_the_channels_installs_do_not_trust_is_refused_before_anything_is_uploaded(
    tmp_path: Path, keypair: tuple[Path, Ed25519PrivateKey, str]
) -> None:
    store = LocalStore(tmp_path / "store")
    release, stranger = keypair[1], Ed25519PrivateKey.generate()
    publish(store, [build(tmp_path / "dist", "1.0.0")], PublishOptions(keys=[release], clock=lambda: NOW))
    before = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())
    with pytest.raises(UntrustedKeyError) as refused:
        publish(store, [build(tmp_path / "dist", "1.1.0")], PublishOptions(keys=[stranger], clock=lambda: NOW))
    message = str(refused.value)
    assert message.startswith(
        f"app/stable: its installs trust the key(s) that signed its manifest now (key id {key_id(release)[:16]})"
    )
    assert (
        f"leave out {key_id(release)[:16]}" in message
        and "'gupper-publish rotate-keys app" in message
        and "\n" not in message
    )
    assert (
        sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()) == before
    )  # 1.1.0 not uploaded
    with pytest.raises(UntrustedKeyError):
        regenerate_manifest(store, "app", PublishOptions(keys=[stranger], clock=lambda: NOW), force=True)  # resign
    # More keys than needed is fine; then the extra one has signed too, and is needed from now on.
    assert (
        publish(store, [build(tmp_path / "dist", "1.1.0")], PublishOptions(keys=[release, stranger], clock=lambda: NOW))
        .manifests[0]
        .serial
        == 2
    )
    with pytest.raises(UntrustedKeyError, match=f"leave out {key_id(stranger)[:16]}"):
        regenerate_manifest(store, "app", PublishOptions(keys=[release], clock=lambda: NOW), force=True)
    # rotate-keys is the way to change keys: it must itself be signed by the keys installs trust now ...
    new = Ed25519PrivateKey.generate()
    new_text = load_public_text(new)
    with pytest.raises(UntrustedKeyError):
        rotate_keys(store, "app", [new_text], 1, PublishOptions(keys=[new], clock=lambda: NOW))
    rotate_keys(store, "app", [new_text], 1, PublishOptions(keys=[release, stranger, new], clock=lambda: NOW))
    # ... and from then on the announced set decides.
    assert regenerate_manifest(store, "app", PublishOptions(keys=[new], clock=lambda: NOW), force=True).changed
    with pytest.raises(UntrustedKeyError, match="trusts 1 key"):
        regenerate_manifest(store, "app", PublishOptions(keys=[release], clock=lambda: NOW), force=True)


def load_public_text(private: Ed25519PrivateKey) -> str:
    from gupper_publish import public_key_of

    return public_key_of(private).to_text()


def test_cli_refuses_an_untrusted_key_in_one_line(
    tmp_path: Path, keypair: tuple[Path, Ed25519PrivateKey, str], capsys: pytest.CaptureFixture[str]
) -> None:
    other, _, _ = keygen(tmp_path / "k" / "other")
    store = str(tmp_path / "store")
    assert main(["publish", "--store", store, "--key", str(keypair[0]), str(build(tmp_path / "dist", "1.0.0"))]) == 0
    capsys.readouterr()
    assert main(["publish", "--store", store, "--key", str(other), str(build(tmp_path / "dist", "1.1.0"))]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("gupper-publish: error: app/stable: its installs trust the key(s) that signed its manifest now")
        and err.count("\n") == 1
    )
    assert not (tmp_path / "store" / "app" / "1.1.0").exists()
    doc = json.loads((tmp_path / "store" / "app" / "stable" / "latest.json").read_text())
    assert doc["signed"]["serial"] == 1
    # The private key where rotate-keys wants the new public key: said so, without showing it.
    assert (
        main(
            [
                "rotate-keys",
                "app",
                "--store",
                store,
                "--key",
                str(keypair[0]),
                "--new-key",
                str(other),
                "--threshold",
                "1",
            ]
        )
        == 1
    )
    assert (
        f"--new-key takes a public key, and '{other}' is a private key; pass the .pub written beside it"
        in capsys.readouterr().err
    )
