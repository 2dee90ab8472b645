"""Item 14: the Ed25519 verifiers a client could ship, measured side by side (the figures that chose PyNaCl).

Each candidate is installed into a venv of its own (``.gupper/bench/verifier-<name>``) and measured
for: the import of what verifying needs (whole process over ``python -c pass``, alternated), one
verify of a 1 kB message (microseconds, in its venv), the wheels it brings (the candidate and its
runtime dependencies, as pip downloads them for this platform), what it adds to a one-file
PyInstaller build of hello world (``--hidden-import``, built with the floor venv's PyInstaller), and
whether it refuses a flipped message and a non-canonical signature (S + L, the malleability check
RFC 8032 asks for). pymonocypher is listed but cannot verify our signatures: Monocypher 4's
``crypto_eddsa_check`` is EdDSA over BLAKE2b, not RFC 8032 Ed25519 (SHA-512).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench import freeze
from bench.common import CACHE, ensure_venv, median, run_exact
from bench.harness import RUN, Bench, Row

# name: (requirement, module to bundle, import statement, verify(pub, sig, msg) -> bool body, maintenance note)
CANDIDATES: dict[str, tuple[str, str, str, str, str]] = {
    "cryptography": (
        "cryptography>=42",
        "cryptography.hazmat.primitives.asymmetric.ed25519",
        "from cryptography.exceptions import InvalidSignature\nfrom "
        "cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey",
        "try:\n    Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)\n    return "
        "True\nexcept (InvalidSignature, ValueError):\n    return False",
        "PyCA; Rust + OpenSSL statically linked",
    ),
    "pynacl": (
        "pynacl>=1.5",
        "nacl.signing",
        "from nacl.exceptions import BadSignatureError\nfrom nacl.signing import VerifyKey",
        "try:\n    VerifyKey(pub).verify(msg, sig)\n    return True\nexcept "
        "(BadSignatureError, ValueError):\n    return False",
        "PyCA; libsodium via cffi",
    ),
    "pycryptodomex": (
        "pycryptodomex>=3.15",
        "Cryptodome.Signature.eddsa",
        "from Cryptodome.Signature import eddsa",
        "try:\n    eddsa.new(eddsa.import_public_key(pub), 'rfc8032').verify(msg, sig)\n  "
        "  return True\nexcept ValueError:\n    return False",
        "one maintainer, active; own C modules",
    ),
    "ecdsa": (
        "ecdsa>=0.18",
        "ecdsa",
        "from ecdsa import BadSignatureError, Ed25519, VerifyingKey\nfrom ecdsa.errors import MalformedPointError",
        "try:\n    return bool(VerifyingKey.from_string(pub, curve=Ed25519).verify(sig, msg))\n"
        "except (BadSignatureError, MalformedPointError, ValueError, AssertionError):\n    return False",
        "tlsfuzzer; pure Python (its README: not for side-channel-sensitive use)",
    ),
    "eddsa": (
        "eddsa>=0.8",
        "eddsa",
        "import eddsa",
        "return bool(eddsa.ed25519_verify(sig, pub, msg))",
        "one maintainer, 'Beta'; libeddsa in C",
    ),
}

MEASURE = r"""
import base64, json, sys, time
v = {k: base64.b64decode(x) for k, x in json.loads(sys.argv[1]).items()}
{imports}
def verify(pub, sig, msg):
{body}
bad = bytearray(v["msg"]); bad[0] ^= 1
checks = dict(valid=verify(v["pub"], v["sig"], v["msg"]), flipped=verify(v["pub"], v["sig"], bytes(bad)),
              noncanonical=verify(v["pub"], v["noncanon"], v["msg"]))
n, t0 = 0, time.perf_counter()
while (el := time.perf_counter() - t0) < 1.0 or n < 20:
    verify(v["pub"], v["sig"], v["msg"]); n += 1
print(json.dumps(dict(checks, verify_us=el / n * 1e6)))
"""


def vectors() -> str:
    """A key, a 1 kB message, its signature and a non-canonical twin (S + L), signed with the publisher's library."""
    import base64
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    msg = os.urandom(1024)
    sig = key.sign(msg)
    order = 2**252 + 27742317777372353535851937790883648493
    noncanon = sig[:32] + (int.from_bytes(sig[32:], "little") + order).to_bytes(32, "little")
    pub = key.public_key().public_bytes_raw()
    return json.dumps(
        {k: base64.b64encode(x).decode() for k, x in {"pub": pub, "msg": msg, "sig": sig, "noncanon": noncanon}.items()}
    )


def wheel_mb(python: Path, requirement: str) -> tuple[float, str]:
    where = CACHE / "verifier-wheels" / requirement.split(">", maxsplit=1)[0].split("=", maxsplit=1)[0]
    if not where.is_dir() or not any(where.glob("*.whl")):
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "-d",
                str(where),
                requirement,
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    wheels = sorted(where.glob("*.whl"))
    return sum(w.stat().st_size for w in wheels) / 1e6, ", ".join(
        w.name.split("-")[0] + " " + w.name.split("-")[1] for w in wheels
    )


def item14_verifiers(b: Bench) -> None:
    vec = vectors()
    floor_py = freeze.floor_venv()
    out = RUN / "verifiers"
    hello = freeze.freeze(floor_py, "hello", "hello", out).stat().st_size
    rounds = max(9, b.reps * 2)
    for name, (req, module, imports, body, who) in CANDIDATES.items():
        reqfile = CACHE / f"verifier-{name}.txt"
        reqfile.write_text(req + "\n")
        py = ensure_venv(CACHE / f"verifier-{name}", reqfile)
        script = MEASURE.replace("{imports}", imports).replace(
            "{body}", "\n".join("    " + line for line in body.splitlines())
        )
        got = json.loads(
            subprocess.run([str(py), "-c", script, vec], capture_output=True, text=True, check=True, timeout=120).stdout
        )
        stmt = imports.replace("\n", "; ")
        pairs: dict[str, list[float]] = {"pass": [], "import": []}
        for _ in range(rounds):
            for key, code in (("pass", "pass"), ("import", stmt)):
                ms, proc = run_exact([str(py), "-c", code], timeout=60)
                proc.check_returncode()
                pairs[key].append(ms)
        import_ms = median(pairs["import"]) - median(pairs["pass"])
        wheels, wheel_names = wheel_mb(py, req)
        site = next((Path(py).parent.parent / "lib").glob("python3*/site-packages"))
        bundle = (
            freeze.freeze(floor_py, "hello", f"hello-{name}", out, flags=["--hidden-import", module], paths=[site])
            .stat()
            .st_size
        )
        version = subprocess.run(
            [str(py), "-m", "pip", "show", req.split(">")[0]], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        version = next(
            (line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("Version:")), "?"
        )
        ok = got["valid"] and not got["flipped"]
        b.metrics[f"verifier_{name}"] = got["verify_us"]
        b.add(
            Row(
                "14",
                f"Ed25519 verifier {name} {version}: one-file bundle over hello world",
                "MB",
                (bundle - hello) / 1e6,
                note=f"import +{import_ms:.1f} ms (whole process); verify {got['verify_us']:,.0f} us (1 "
                f"kB); wheels {wheels:.2f} MB ({wheel_names}); "
                f"{'verifies' if ok else 'FAILS to verify'} our signatures; non-canonical S "
                f"{'accepted (malleable)' if got['noncanonical'] else 'refused'}; {who}",
            )
        )
    b.add(
        Row(
            "14",
            "Ed25519 verifier pymonocypher: not comparable",
            "MB",
            None,
            note="Monocypher 4's signature_check is EdDSA with BLAKE2b, not RFC 8032 Ed25519: it "
            "cannot check Gupper's signatures",
        )
    )
