"""Test tiers, and how a run is spread over worker processes (hooks and fixtures imported by conftest.py).

Tiers:

- **quick**: ``python -m pytest`` with nothing named (no paths, no ``-m``, no ``-k``) runs every
  test but the ``e2e`` and ``soak`` ones: no PyInstaller builds, no fresh venvs, no long random
  runs. About a minute on two cores.
- **all**: ``--tier all``, or naming what to run (``pytest tests/test_e2e.py``, ``-m e2e``,
  ``-k kill``), turns that filter off. ``bash scripts/test.sh``, and so CI's ``.ci/run``, passes
  ``--tier all``: it runs every test.

Workers: pytest-xdist (``-n auto --dist loadscope`` in pyproject.toml) with the scheduler below.
A module's tests stay on one worker, so module fixtures (a Ceph cluster, a fresh venv, a wheel)
are made once; the modules that build the demo app for the session's local store share one worker
per kind of build, since a build bakes in the URL of its worker's store; the longest units start
first. One process instead where workers cannot help or would hide something: ``-s`` (a worker's
prints never reach the terminal), ``--pdb``, and runs that name tests of a single unit of work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

TIERS = ("quick", "all")
SLOW_MARKERS = ("e2e", "soak")
WORKERS = 4
"""Workers for ``-n auto``. The suite waits (deadlines, servers, child processes) far more than it
computes: the quick tier used 62 s of CPU in 130 s in one process, so on two cores four workers
beat two (48 s against 73 s), and the whole suite keeps both cores busy."""

UNITS = {
    # The modules that build the one-file demo app for the session's local store (e2e_support.py):
    # a build bakes in the URL of the store of the worker that made it, so these share a worker
    # and each build is made once.
    "tests/test_e2e.py": "demo-onefile",
    "tests/test_e2e_bundle.py": "demo-onefile",
    "tests/test_e2e_delta.py": "demo-onefile",
    "tests/test_e2e_release.py": "demo-onefile",
    "tests/test_e2e_resilience.py": "demo-onefile",
    # The one-folder builds, likewise.
    "tests/test_e2e_folder.py": "demo-onedir",
    "tests/test_e2e_folder_delta.py": "demo-onedir",
    "tests/test_e2e_bundles.py": "demo-onedir",
    # Minutes of waiting on deadlines (600 fuzzed responses), little computing: a unit of its own.
    "tests/test_fuzz_http.py::test_fuzzed_responses_soak": "fuzz-soak",
}
"""Units of work by node-id prefix (the longest matching prefix wins). Any other test goes with its
module."""

COST = {
    "demo-onefile": 380,
    "tests/test_e2e_desktop.py": 330,
    "tests/test_build_helper.py": 210,
    "fuzz-soak": 200,
    "demo-onedir": 195,
    "tests/test_release_workflow.py": 120,
    "tests/test_readme_adoption.py": 105,
    "tests/test_rgw_e2e.py": 100,
    "tests/test_fleet.py": 100,
    "tests/test_fuzz_http.py": 40,
    "tests/test_rgw.py": 40,
    "tests/test_packaging.py": 35,
    "tests/test_signing_keys.py": 25,
    "tests/test_field_round_two.py": 25,
    "tests/test_pyinstaller_hooks.py": 45,
}
"""Rough wall seconds per unit of work in a full run on four workers (``--durations``). The longest
start first, and no worker queues a long unit behind another, so the short ones fill the gaps.
Only the order depends on these figures, never what runs."""
LONG = 30
"""Units at least this long are never queued on a worker behind one another."""


def unit_of_work(nodeid: str) -> str:
    """The unit of work a test (or a module, by its path) belongs to: see :data:`UNITS`."""
    matches = [prefix for prefix in UNITS if nodeid == prefix or nodeid.startswith((prefix + "::", prefix + "["))]
    return UNITS[max(matches, key=len)] if matches else nodeid.split("::", 1)[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=TIERS,
        default=None,
        help="quick: all but the e2e and soak tests (the default when no paths, -m or -k are "
        "given); all: every test (scripts/test.sh, CI)",
    )


def tier(config: pytest.Config) -> str:
    """The tier this run selects: what ``--tier`` says, else quick unless tests were named."""
    chosen: str | None = config.getoption("tier")
    if chosen:
        return chosen
    named = config.args_source == pytest.Config.ArgsSource.ARGS or config.option.markexpr or config.option.keyword
    return "all" if named else "quick"


def pytest_report_header(config: pytest.Config) -> str:
    return f"tier: {tier(config)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if tier(config) != "quick":
        return
    slow = [item for item in items if any(item.get_closest_marker(m) for m in SLOW_MARKERS)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        dropped = set(map(id, slow))
        items[:] = [item for item in items if id(item) not in dropped]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if tier(config) == "quick":
        terminalreporter.write_line(
            "quick tier: the e2e and soak tests did not run; every test: bash scripts/test.sh "
            "(or python -m pytest --tier all)"
        )


def workers_for(env: Mapping[str, str], capture: str, named: Sequence[str] | None) -> int:
    """How many workers ``-n auto`` starts, given the environment, ``--capture`` and the node ids or
    paths named on the command line (``None``: none named, the whole suite)."""
    if env.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(env["PYTEST_XDIST_AUTO_NUM_WORKERS"])  # as xdist's own hook does
    if capture == "no":
        return 0  # -s: a worker's output never reaches the terminal
    if (
        named is not None
        and all(Path(arg.split("::", 1)[0]).suffix == ".py" for arg in named)
        and len({unit_of_work(arg) for arg in named}) <= 1
    ):
        return 0  # one unit of work runs on one worker anyway: starting four would only cost time
    return WORKERS


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    named = None
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        named = [_relative(arg, config.rootpath) for arg in config.args]
    return workers_for(os.environ, config.getoption("capture"), named)


def _relative(arg: str, root: Path) -> str:
    """A command-line path or node id, relative to the rootdir as node ids are."""
    path, sep, rest = arg.partition("::")
    with contextlib.suppress(ValueError):  # outside the rootdir: as given
        path = Path(path).resolve().relative_to(root).as_posix()
    return path + sep + rest


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` with :func:`unit_of_work` as the scope and the longest units first."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LongestFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            held = [unit for unit, tests in self.assigned_work.get(node, {}).items() if not all(tests.values())]
            holds_long = any(COST.get(unit, 0) >= LONG for unit in held)
            pool = [unit for unit in self.workqueue if not (holds_long and COST.get(unit, 0) >= LONG)] or list(
                self.workqueue
            )
            pick = max(pool, key=lambda unit: COST.get(unit, 0))  # the first of equals: collection order
            self.workqueue.move_to_end(pick, last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


@pytest.fixture(scope="session", autouse=True)
def pyinstaller_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A PyInstaller cache per worker: ``--clean`` empties the cache a build uses, and a build on
    another worker (or in another checkout's test run) must not lose its files to that."""
    before = os.environ.get("PYINSTALLER_CONFIG_DIR")
    os.environ["PYINSTALLER_CONFIG_DIR"] = str(tmp_path_factory.mktemp("pyinstaller-config"))
    try:
        yield
    finally:
        _restore("PYINSTALLER_CONFIG_DIR", before)


@pytest.fixture(scope="session", autouse=True)
def temp_dir_of_this_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A system temp dir per worker (``TMPDIR``, ``tempfile.gettempdir()``). The client keeps
    things per app and user there (the self-test's scratch folder ``gupper-preflight-app-<uid>``):
    two tests updating an app named ``app`` on two workers at once must not share them. Readable
    by all like /tmp, for the test that runs the app as ``nobody``."""
    tmp_path_factory.getbasetemp()  # pytest's own tmp dirs stay where they were
    before = os.environ.get("TMPDIR")
    path = tempfile.mkdtemp(prefix="gupper-tests-")
    os.chmod(path, 0o755)
    os.environ["TMPDIR"] = tempfile.tempdir = path
    try:
        yield Path(path)
    finally:
        tempfile.tempdir = None
        _restore("TMPDIR", before)
        shutil.rmtree(path, ignore_errors=True)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
