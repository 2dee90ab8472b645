"""A fleet of simulated installs, each start of each one a real process running the Gupper client.

``python -m tests.fleet SPEC.json`` (SPEC: :class:`Spec` as JSON) starts every install of the
spec until it settles, a few at a time. An install is a folder: ``app`` (the installed "binary",
a shell script from :func:`release_script`), ``state/`` (the updater's state), ``tmp/`` and
``starts.jsonl`` (one line per start: what the updater did and how the app fared). A start is a
process forked from this one, which imported the client once, so a start costs what the client
does and not the interpreter's start-up; it runs the start-up code an app embeds:

1. ``app --version`` says which version is installed (the app knows its own version);
2. ``Updater(...).run(restart=False)``; installed or rolled back: exit, to be started again (what
   ``run()`` does with an exec);
3. the app's own start-up: ``app`` runs, and crashes on a machine with the trait its release
   crashes on (exit code from the script); otherwise ``confirm()`` and a normal exit (atexit sends
   a trial outcome still under way, as in any app).

An install settles when a start runs the app fine without needing another start. Every start has
an alarm (``start_timeout``), every install at most ``max_starts`` starts. Network: the spec's
manifest URL only (127.0.0.1 in the tests).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

OK, RESTART, CRASHED = 0, 10, 11


@dataclass(frozen=True)
class Spec:
    """What to run: the app's settings, the installs (folder, machine trait) and the limits."""

    app: str
    manifest_url: str
    public_key: str
    ca: str
    installs: list[tuple[str, str]]  # (folder, trait: "" or what some release fails on)
    parallel: int = 6
    max_starts: int = 8
    start_timeout: int = 60


def release_script(version: str, *, crash_on: str = "", refuse_self_test_on: str = "", pad: int = 32 << 10) -> bytes:
    """A release of the fleet's app: answers the pre-flight and ``--version``, and at its start-up fails
    with exit 3 on machines whose ``FLEET_TRAIT`` is ``crash_on``; ``refuse_self_test_on`` makes its
    self-test fail there. The padding after ``exit`` is the same in every version (a patch stays small)."""
    refuse = f'if [ "$FLEET_TRAIT" = "{refuse_self_test_on}" ]; then exit 4; fi\n  ' if refuse_self_test_on else ""
    crash = f'if [ "$FLEET_TRAIT" = "{crash_on}" ]; then echo "{version} crashed" >&2; exit 3; fi\n' if crash_on else ""
    body = (
        "#!/bin/sh\n"
        f'if [ -n "$GUPPER_SELF_TEST" ]; then\n'
        f'  {refuse}echo "gupper-self-test $GUPPER_SELF_TEST {version}"; exit 0\nfi\n'
        f'if [ "$1" = --version ]; then echo {version}; exit 0; fi\n'
        f"{crash}echo {version} running\nexit 0\n"
    )
    line = b"# " + bytes(range(48, 48 + 60)) + b"\n"
    return body.encode() + line * (pad // len(line))


@dataclass
class Start:
    """One start of one install, as its process saw it (a line of ``starts.jsonl``)."""

    version: str
    status: str = ""
    message: str = ""
    crashed: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _record(install: Path, start: Start) -> None:
    line = (json.dumps(asdict(start)) + "\n").encode()
    fd = os.open(install / "starts.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of concurrent writers never interleave
    finally:
        os.close(fd)


def one_start(spec: Spec, install: Path, trait: str) -> int:
    """The app's start-up code, in a process of its own: what a start did decides the exit code."""
    from gupper import Platform, Status, Updater, UpdaterConfig

    (install / "tmp").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(install / "tmp")  # the pre-flight's scratch folder is per app and user
    tempfile.tempdir = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "GUPPER_"))}
    if trait:
        env["FLEET_TRAIT"] = trait
    exe = install / "app"
    asked = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True, timeout=30, check=True)
    start = Start(asked.stdout.strip())
    config = UpdaterConfig(
        app=spec.app,
        current_version=start.version,
        manifest_url=spec.manifest_url,
        public_keys=(spec.public_key,),
        ca_bundle=spec.ca,
        executable=str(exe),
        state_dir=str(install / "state"),
        platform=Platform("linux", "amd64"),
        retries=0,
    )
    # The simulated app restarts by being started again (RESTART below), not by an exec of this process.
    updater = Updater(config, environ=env, argv=[str(exe)], restart_on_rollback=False)
    result = updater.run(restart=False)
    start.status, start.message = result.status.value, result.message
    if result.status in (Status.INSTALLED, Status.ROLLED_BACK):
        _record(install, start)
        return RESTART
    app = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=30, check=False)
    start.crashed = app.returncode != 0
    _record(install, start)
    if start.crashed:
        return CRASHED
    updater.confirm()
    return OK


def _child(spec: Spec, install: Path, trait: str) -> None:
    """In the forked process: one start, then exit as an app does (atexit runs, then the process ends)."""
    signal.alarm(spec.start_timeout)  # the default action ends this process: no start outlives its bound
    code = 70
    try:
        code = one_start(spec, install, trait)
    except BaseException as e:  # a failure of the simulation itself: recorded, never silent
        _record(install, Start("?", "error", f"{type(e).__name__}: {e}"))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # what the interpreter does at exit: a pending outcome report goes out
        os._exit(code)  # not back into the parent's loop


def run(spec: Spec) -> dict[str, int]:
    """Start every install until it settles; returns how many starts ended how (by exit code)."""
    import gupper.client  # noqa: F401  (loaded once, here: every start is a fork of this process)

    waiting = deque((Path(folder), trait, 1) for folder, trait in spec.installs)
    running: dict[int, tuple[Path, str, int]] = {}
    tally: dict[str, int] = {}
    while waiting or running:
        while waiting and len(running) < spec.parallel:
            install, trait, n = waiting.popleft()
            pid = os.fork()
            if pid == 0:
                _child(spec, install, trait)
            running[pid] = (install, trait, n)
        pid, status = os.waitpid(-1, 0)  # a child ends by its alarm at the latest
        install, trait, n = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        tally[str(code)] = tally.get(str(code), 0) + 1
        if code in (RESTART, CRASHED) and n < spec.max_starts:
            waiting.append((install, trait, n + 1))
        elif code != OK:
            _record(install, Start("?", "unsettled", f"start {n} ended with {code}"))
    return tally


def main(argv: list[str]) -> int:
    """``python -m tests.fleet SPEC.json``: run the fleet, print the tally as JSON."""
    raw = json.loads(Path(argv[0]).read_text())
    spec = Spec(**{**raw, "installs": [tuple(i) for i in raw["installs"]]})
    print(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
