"""The test tiers and the worker schedule (tests/tiers.py): a bare ``pytest`` is the quick tier,
``scripts/test.sh`` (CI) runs every test, and the builds of the demo app are made once per run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from .tiers import COST, LONG, UNITS, WORKERS, pytest_xdist_make_scheduler, unit_of_work, workers_for

ROOT = Path(__file__).resolve().parent.parent


def collect(*args: str) -> list[str]:
    """Node ids ``python -m pytest --collect-only`` selects with ``args``, run from the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GUPPER_"))}
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_a_bare_run_is_everything_but_the_e2e_and_soak_tests_and_named_tests_always_run() -> None:
    runs = [(), ("--tier", "all"), ("-m", "e2e or soak"), ("tests/test_e2e_bundle.py",)]
    with ThreadPoolExecutor(len(runs)) as pool:
        quick, every, slow, named = pool.map(lambda args: collect(*args), runs)
    assert slow and set(slow) <= set(every)
    assert sorted(quick) == sorted(set(every) - set(slow))
    assert "tests/test_fuzz_http.py::test_fuzzed_responses_soak" in slow
    assert "tests/test_e2e_resilience.py::test_sigkill_at_random_moments_leaves_a_runnable_app[20261128]" in slow
    assert named == [
        "tests/test_e2e_bundle.py::test_frozen_app_carries_pynacl_with_its_cffi_backend_and_no_cryptography"
    ]  # an e2e test


def test_the_readmes_test_command_and_ci_run_every_test() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    assert script[-1] == 'python -m pytest --tier all "$@"'  # a later --tier quick from the caller wins
    assert "exec bash scripts/test.sh -q" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_module_that_builds_the_demo_app_for_the_session_store_has_a_build_unit() -> None:
    # Such a build bakes in the URL of its worker's store: two workers would build it twice.
    builds = re.compile(r"\b(?:e2e|env)\.build\(|\bbuild_folders\(")  # E2E.build, test_e2e_folder.build_folders
    sources = {f"tests/{p.name}": p.read_text() for p in (ROOT / "tests").glob("test_*.py")}
    modules = sorted(m for m, text in sources.items() if "from .e2e_support import" in text and builds.search(text))
    assert len(modules) >= 7
    assert {m: unit_of_work(m) for m in modules} == {m: UNITS[m] for m in modules}
    assert all(UNITS[m].startswith("demo-") for m in modules)


@pytest.mark.parametrize(
    ("env", "capture", "named", "workers"),
    [
        ({}, "fd", None, WORKERS),
        ({"PYTEST_XDIST_AUTO_NUM_WORKERS": "2"}, "fd", None, 2),
        ({}, "no", None, 0),  # -s
        ({}, "fd", ["tests/test_field_hardening.py"], 0),
        (
            {},
            "fd",
            ["tests/test_e2e.py", "tests/test_e2e_delta.py::test_v1_updates_to_v2_through_a_patch"],
            0,
        ),  # one build unit
        ({}, "fd", ["tests/test_lock.py", "tests/test_e2e.py"], WORKERS),
        ({}, "fd", ["tests"], WORKERS),
    ],
)
def test_auto_starts_workers_only_where_they_can_help(
    env: dict[str, str], capture: str, named: list[str] | None, workers: int
) -> None:
    assert workers_for(env, capture, named) == workers


@pytest.mark.parametrize(("flag", "one_process"), [(None, False), ("-s", True), ("--pdb", True)])
def test_s_and_pdb_run_in_one_process_as_the_readme_says(flag: str | None, one_process: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GUPPER_"))}
    two_units = ["tests/test_lock.py", "tests/test_tiers.py"]  # workers would help: see the first case
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-k", "no_such_test", *two_units]
    cmd += [flag] if flag else []
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 5, proc.stdout[-2000:] + proc.stderr[-2000:]  # 5: every test deselected
    assert ("created: " not in proc.stdout) is one_process, proc.stdout[-2000:]


class Node:
    """A stand-in for xdist's WorkerController: what the scheduler sends it."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def test_the_longest_units_start_first_and_no_worker_queues_two_of_them() -> None:
    collection = [
        "tests/test_build_helper.py::test_one",
        "tests/test_build_helper.py::test_two",
        "tests/test_e2e.py::test_one",
        "tests/test_e2e.py::test_two",
        "tests/test_e2e_delta.py::test_one",
        "tests/test_e2e_folder.py::test_one",
        "tests/test_fuzz_http.py::test_fuzzed_responses_never_hang_raise_leak_or_touch_the_app",
        "tests/test_fuzz_http.py::test_fuzzed_responses_soak",
        *(f"tests/test_quick_{i}.py::test_{j}" for i in range(6) for j in range(3)),
        "tests/test_rgw_e2e.py::test_one",
    ]
    config: Any = SimpleNamespace(
        getvalue={"dist": "loadscope", "tx": ["popen"] * 4}.__getitem__, option=SimpleNamespace(loadscopereorder=True)
    )
    sched = pytest_xdist_make_scheduler(config, None)
    nodes = [Node(f"gw{i}") for i in range(4)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    first = [unit_of_work(collection[node.sent[0]]) for node in nodes]
    assert first == ["demo-onefile", "tests/test_build_helper.py", "fuzz-soak", "demo-onedir"]

    def long_units_held(node: Node) -> list[str]:
        return [
            u for u, tests in sched.assigned_work[node].items() if COST.get(u, 0) >= LONG and not all(tests.values())
        ]

    done = 0
    for _ in range(10 * len(collection)):  # bounded: each round completes one test
        assert all(len(long_units_held(node)) <= 1 for node in nodes)
        busy = [
            node
            for node in nodes
            if len(node.sent) > sum(sum(tests.values()) for tests in sched.assigned_work[node].values())
        ]
        if not busy:
            break
        node = busy[done % len(busy)]
        index = next(i for i in node.sent if not sched.assigned_work[node][unit_of_work(collection[i])][collection[i]])
        sched.mark_test_complete(node, index)
        done += 1
    assert sorted(i for node in nodes for i in node.sent) == list(range(len(collection)))  # every test once
    assert done == len(collection) and sched.tests_finished


def test_each_worker_has_a_temp_dir_of_its_own(temp_dir_of_this_worker: Path) -> None:
    assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(temp_dir_of_this_worker)
    assert (
        temp_dir_of_this_worker.name.startswith("gupper-tests-")
        and temp_dir_of_this_worker.stat().st_mode & 0o755 == 0o755
    )
    assert Path(os.environ["PYINSTALLER_CONFIG_DIR"]).is_dir()
