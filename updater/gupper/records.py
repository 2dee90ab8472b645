"""Value records: what ``@dataclass`` gives Gupper's classes, without building code at import.

``dataclasses`` writes each generated method as text and compiles it with ``exec`` when the class
is created: Gupper's 26 dataclasses cost about 20 ms of every start, and importing ``dataclasses``
(with ``inspect``, ``ast`` and ``dis``) about 6 ms more (bench item 13, README "Benchmarks"). A
record's methods are the generic functions below, compiled once into this module's ``.pyc``; the
class only gets closures over its field table. Type checkers see records as dataclasses
(``typing.dataclass_transform``).

What a record supports is what Gupper uses: ``frozen``, ``order``, ``field(default=...,
default_factory=..., compare=..., repr=...)``, ``__post_init__``, and :func:`replace` /
:func:`asdict`, which Gupper's own code uses; ``dataclasses.replace``, ``fields``, ``asdict`` and
``is_dataclass`` take records too, importing ``dataclasses`` only then.
Fields are the class's own annotations (a record does not extend another record); annotations
must be strings (``from __future__ import annotations``), as in every Gupper module, and
``ClassVar`` ones are not fields.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform, overload

__all__ = ["asdict", "field", "record", "replace"]

_T = TypeVar("_T")
_MISSING: Any = object()
_FIELDS = "__record_fields__"


class _Field:
    __slots__ = ("annotation", "compare", "default", "factory", "name", "repr")

    def __init__(self, default: Any, factory: Any, compare: bool, repr: bool) -> None:
        self.name = ""
        self.annotation: object = "Any"
        self.default = default
        self.factory = factory
        self.compare = compare
        self.repr = repr


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] = _MISSING,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field's options, as ``dataclasses.field``: a default or a factory for it, and whether it
    takes part in ``==``/hash/order and in ``repr``."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("a field cannot have both a default and a default_factory")
    return _Field(default, default_factory, compare, repr)


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return getattr(annotation, "__origin__", annotation) is ClassVar


def _table(cls: type) -> tuple[_Field, ...]:
    table: list[_Field] = []
    seen_default = False
    # Not inspect.get_annotations: importing inspect is part of what records save. The class's own
    # dict holds them under ``from __future__ import annotations``; the attribute is the fallback.
    own = cls.__dict__.get("__annotations__")  # noqa: RUF063
    for name, annotation in (own if own is not None else getattr(cls, "__annotations__", {})).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, _Field) else _Field(value, _MISSING, True, True)
        spec.name, spec.annotation = name, annotation
        if isinstance(value, _Field):
            if value.default is _MISSING:
                delattr(cls, name)  # as dataclasses does: no class attribute for a field without a default
            else:
                setattr(cls, name, value.default)
        has_default = spec.default is not _MISSING or spec.factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__qualname__}: field {name!r} without a default follows one with a default")
        seen_default = seen_default or has_default
        table.append(spec)
    return tuple(table)


def _make_init(cls: type, table: tuple[_Field, ...]) -> Callable[..., None]:
    qualname = cls.__qualname__
    names = tuple(f.name for f in table)
    known = frozenset(names)
    count = len(names)
    defaults = {f.name: f.default for f in table if f.default is not _MISSING}
    factories = {f.name: f.factory for f in table if f.factory is not _MISSING}
    post_init = getattr(cls, "__post_init__", None)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(f"{qualname}() takes {count} positional arguments but {len(args)} were given")
        values = dict(zip(names, args, strict=False))
        for key in kwargs:
            if key in values:
                raise TypeError(f"{qualname}() got multiple values for argument {key!r}")
            if key not in known:
                raise TypeError(f"{qualname}() got an unexpected keyword argument {key!r}")
        values.update(kwargs)
        if len(values) < count:
            for name in names:
                if name in values:
                    continue
                if name in defaults:
                    values[name] = defaults[name]
                elif name in factories:
                    values[name] = factories[name]()
                else:
                    raise TypeError(f"{qualname}() missing required argument: {name!r}")
        # The instance dict directly: a frozen record's __setattr__ refuses, as a frozen dataclass's
        # __init__ goes around its own.
        self.__dict__.update(values)
        if post_init is not None:
            self.__post_init__()

    __init__.__qualname__ = f"{qualname}.__init__"
    return __init__


def _install(cls: type, name: str, function: Callable[..., Any]) -> None:
    if name not in cls.__dict__:  # a method the class writes itself wins, as with dataclasses
        function.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, function)


def _decorate(cls: type[_T], frozen: bool, order: bool) -> type[_T]:
    # A dataclass collects its bases' fields; a record has only its own, so a record built on
    # another would silently lose the base's fields: refused instead.
    base = next((b for b in cls.__mro__[1:] if _FIELDS in b.__dict__), None)
    if base is not None:
        raise TypeError(f"{cls.__qualname__}: a record cannot extend the record {base.__qualname__}; repeat its fields")
    table = _table(cls)
    made = {
        _FIELDS: table,
        "__dataclass_fields__": _DataclassFields(table, frozen, order),
        "__match_args__": tuple(f.name for f in table),
        "__init__": _make_init(cls, table),
    }
    for name, value in made.items():  # setattr: type checkers refuse assigning to these names
        setattr(cls, name, value)
    shown = tuple(f.name for f in table if f.repr)
    compared = tuple(f.name for f in table if f.compare)

    def key(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in compared)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return key(self) == key(other)

    _install(cls, "__repr__", __repr__)
    _install(cls, "__eq__", __eq__)
    if order:
        for name, compare in (
            ("__lt__", tuple.__lt__),
            ("__le__", tuple.__le__),
            ("__gt__", tuple.__gt__),
            ("__ge__", tuple.__ge__),
        ):
            _install(cls, name, _ordering(cls, key, compare))
    if frozen:
        qualname = cls.__qualname__

        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise AttributeError(f"cannot assign to field {name!r} of frozen {qualname}")

        def __delattr__(self: Any, name: str) -> None:
            raise AttributeError(f"cannot delete field {name!r} of frozen {qualname}")

        def __hash__(self: Any) -> int:
            return hash(key(self))

        _install(cls, "__setattr__", __setattr__)
        _install(cls, "__delattr__", __delattr__)
        if cls.__dict__.get("__hash__") is None:  # None: Python's mark for a class that wrote its own __eq__
            __hash__.__qualname__ = f"{qualname}.__hash__"
            cls.__hash__ = __hash__  # type: ignore[method-assign]
    elif "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
        cls.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value: unhashable
    return cls


def _ordering(cls: type, key: Callable[[Any], tuple[Any, ...]], compare: Any) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return compare(key(self), key(other))

    return method


class _DataclassFields:
    """A record's ``__dataclass_fields__``, made on first use: ``dataclasses.replace``, ``fields``,
    ``asdict`` and ``is_dataclass`` then take records as dataclasses (an app may use them on its
    :class:`~gupper.UpdaterConfig`), and only code that uses them imports ``dataclasses``. The
    fields are those of a dataclass twin of the record, so nothing private of ``dataclasses`` is
    relied on."""

    def __init__(self, table: tuple[_Field, ...], frozen: bool, order: bool) -> None:
        self.table, self.frozen, self.order = table, frozen, order
        self.fields: dict[str, Any] | None = None

    def __get__(self, obj: object, owner: type) -> dict[str, Any]:
        if self.fields is None:
            import dataclasses

            specs = []
            for f in self.table:
                options: dict[str, Any] = {"compare": f.compare, "repr": f.repr}
                if f.default is not _MISSING:
                    options["default"] = f.default
                if f.factory is not _MISSING:
                    options["default_factory"] = f.factory
                specs.append((f.name, f.annotation, dataclasses.field(**options)))
            # The twin lives in the record's module, where dataclasses (3.12+) reads string annotations.
            where: dict[str, Any] = {"module": owner.__module__} if sys.version_info >= (3, 12) else {}
            twin = dataclasses.make_dataclass(owner.__name__, specs, frozen=self.frozen, order=self.order, **where)
            self.fields = getattr(twin, "__dataclass_fields__")  # noqa: B009 - typeshed does not declare it on type
        return self.fields


@overload
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(*, frozen: bool = False, order: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[_T] | None = None, /, *, frozen: bool = False, order: bool = False) -> Any:
    """Make ``cls`` a record of its annotated fields, as ``@dataclass`` / ``@dataclass(frozen=True,
    order=True)`` would: ``__init__``, ``__repr__``, ``__eq__``, a hash when frozen, ``<`` and the
    rest with ``order``."""
    if cls is None:
        return lambda c: _decorate(c, frozen, order)
    return _decorate(cls, frozen, order)


def _table_of(obj: object) -> tuple[_Field, ...]:
    table = getattr(type(obj), _FIELDS, None)
    if table is None:
        raise TypeError(f"{type(obj).__qualname__} is not a record")
    return table  # type: ignore[no-any-return]


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of the record ``obj`` with ``changes``, created through its ``__init__`` (so
    ``__post_init__`` checks it again), as ``dataclasses.replace``."""
    table = _table_of(obj)
    values = {f.name: getattr(obj, f.name) for f in table}
    for name in changes:
        if name not in values:
            raise TypeError(f"{type(obj).__qualname__} has no field {name!r}")
    values.update(changes)
    return type(obj)(**values)


def asdict(obj: object) -> dict[str, Any]:
    """The record's fields as a dict, records inside it (also in lists, tuples and dicts) turned
    into dicts too, as ``dataclasses.asdict``; other values are not copied."""
    return {f.name: _plain(getattr(obj, f.name)) for f in _table_of(obj)}


def _plain(value: Any) -> Any:
    if hasattr(type(value), _FIELDS):
        return asdict(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value
