"""gupper.records: the records Gupper's classes are, behaving as the dataclasses they replace, and
working with ``dataclasses``' own functions (an app may call ``dataclasses.replace`` on its
UpdaterConfig). That a start does not import ``dataclasses`` is
tests/test_lazy_imports.py; what it saves is bench item 13."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from gupper import UpdaterConfig
from gupper.platforms import Platform
from gupper.records import asdict, field, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: Mapping[str, Any] = field(default_factory=dict, compare=False)
    secret: str = field(default="", repr=False)
    LIMIT: ClassVar[int] = 10
    UNANNOTATED = "not a field"


@record
class Box:
    items: list[Point] = field(default_factory=list)
    named: dict[str, Point] = field(default_factory=dict)
    seen: int = 0

    def __post_init__(self) -> None:
        if self.seen < 0:
            raise ValueError("seen must not be negative")


@record(frozen=True, order=True)
class Pair:
    a: int
    b: str


def test_a_record_is_made_as_a_dataclass_would_be() -> None:
    p = Point(1, tags={"k": 1}, secret="s")
    assert (p.x, p.y, p.tags, p.secret) == (1, 0, {"k": 1}, "s")
    assert repr(p) == "Point(x=1, y=0, tags={'k': 1})"  # secret: repr=False
    assert Point(1) == Point(1, tags={"other": 2}) != Point(2)  # tags do not compare
    assert hash(Point(1, 2)) == hash(Point(1, 2, tags={"x": 1}))
    not_a_tuple: object = Point(1)
    assert not_a_tuple != (1, 0) and Point.__match_args__ == ("x", "y", "tags", "secret")
    assert Point.LIMIT == 10 and Point.UNANNOTATED == "not a field" and Point.secret == ""
    assert Point(1).tags is not Point(1).tags  # one factory call per instance
    assert dataclasses.fields(Point)[1].default == 0  # dataclasses sees the same fields


def test_wrong_arguments_are_the_type_errors_a_dataclass_raises() -> None:
    make: Any = Point  # what mypy refuses in typed code, an app's untyped code can still do
    for args, kwargs, says in (
        ((), {}, "missing required argument: 'x'"),
        ((1, 2, {}, "", 5), {}, "takes 4 positional arguments but 5 were given"),
        ((1,), {"x": 2}, "got multiple values for argument 'x'"),
        ((1,), {"z": 2}, "unexpected keyword argument 'z'"),
    ):
        with pytest.raises(TypeError, match=says):
            make(*args, **kwargs)
    bad: Any = type("Bad", (), {"__annotations__": {"a": "int", "b": "int"}, "a": 1})
    with pytest.raises(TypeError, match="'b' without a default follows one with a default"):
        record(bad)
    with pytest.raises(ValueError, match="both a default and a default_factory"):
        field(default=1, default_factory=int)
    # A dataclass would take Point's fields too; a record would lose them, so it is refused.
    extended: Any = type("Extended", (Point,), {"__annotations__": {"z": "int"}, "z": 0})
    with pytest.raises(TypeError, match="cannot extend the record Point; repeat its fields"):
        record(extended)


def test_frozen_records_refuse_changes_and_mutable_ones_are_unhashable() -> None:
    p = Point(1)
    with pytest.raises(AttributeError, match="cannot assign to field 'x' of frozen Point"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete"):
        del p.x
    box = Box()
    box.seen = 3
    assert box.seen == 3
    with pytest.raises(TypeError, match="unhashable"):
        hash(box)
    with pytest.raises(ValueError, match="must not be negative"):
        Box(seen=-1)


def test_ordered_records_sort_by_their_fields_in_order() -> None:
    assert sorted([Pair(2, "a"), Pair(1, "b"), Pair(1, "a")]) == [Pair(1, "a"), Pair(1, "b"), Pair(2, "a")]
    assert Pair(1, "a") <= Pair(1, "a") < Pair(1, "b") and Pair(2, "a") >= Pair(1, "z") > Pair(1, "y")
    with pytest.raises(TypeError):
        _ = Pair(1, "a") < Point(1)  # type: ignore[operator]
    assert sorted([Platform("windows", "amd64"), Platform("linux", "arm64")])[0].os == "linux"


def test_replace_and_asdict_run_through_init_and_reach_inner_records() -> None:
    p = Point(1, 2, tags={"t": 1})
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags) == (1, 5, {"t": 1}) and p.y == 2
    with pytest.raises(TypeError, match="Point has no field 'z'"):
        replace(p, z=1)
    with pytest.raises(ValueError, match="must not be negative"):
        replace(Box(), seen=-1)  # __post_init__ checks the copy
    box = Box(items=[Point(1)], named={"a": Point(2, secret="s")})
    expected = {
        "items": [{"x": 1, "y": 0, "tags": {}, "secret": ""}],
        "named": {"a": {"x": 2, "y": 0, "tags": {}, "secret": "s"}},
        "seen": 0,
    }
    assert asdict(box) == expected == dataclasses.asdict(box)
    with pytest.raises(TypeError, match="is not a record"):
        asdict(object())


def test_an_apps_dataclasses_calls_take_the_updater_config() -> None:
    url = "https://updates.example/app/stable/latest.json"
    config = UpdaterConfig(app="app", current_version="1.0.0", manifest_url=url, public_keys=("k",))
    assert dataclasses.is_dataclass(config)
    changed = dataclasses.replace(config, current_version="1.1.0")
    assert changed.current_version == "1.1.0" and changed.app == "app"
    assert changed == replace(config, current_version="1.1.0")
    assert dataclasses.asdict(config)["manifest_url"] == config.manifest_url
    assert [f.name for f in dataclasses.fields(config)][:3] == ["app", "current_version", "manifest_url"]


def test_records_copy_and_pickle_as_values() -> None:
    p = Point(1, 2, tags={"t": [1]})
    for other in (copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert other == p and other.tags == {"t": [1]}


def test_a_start_builds_no_class_from_text() -> None:
    """What the records are for: creating Gupper's classes compiles nothing (dataclasses compiles
    each generated method with exec). Counted, not timed: ``compile`` calls made while the start-up
    modules import (module code itself arrives as code objects)."""
    code = (
        "import builtins, sys\n"
        "import requests, nacl.signing, packaging.version\n"
        "calls = []\n"
        "def counting(real):\n"
        "    return lambda code, *a, **k: (isinstance(code, str) and calls.append(code), real(code, *a, **k))[1]\n"
        "builtins.exec, builtins.eval = counting(builtins.exec), counting(builtins.eval)\n"
        "from gupper import Updater, UpdaterConfig\n"
        "import gupper.layouts.single, gupper.manifest\n"
        "print(len(calls), 'dataclasses' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["0", "False"], done.stderr
