"""Stored values back to Python values: the declared type when code declares one.

`check_json` (in `_json`) turns a value into its stored, tagged-JSON form;
`fresh` turns a stored value into plain JSON (a datetime its ISO text, a
dataclass its fields). `restore` goes one step further where user code declares
a type (a task's return annotation, a parameter's annotation): it rebuilds that
type with a cattrs converter (made on first use). Which types are rebuilt is decided
once, when a function is decorated (`declared_type`): annotations that name no
rebuildable type (``dict[str, Any]``, ``int | str``, ``Any``) give plain JSON,
exactly as before.

Nothing here imports a class named by stored data: the type always comes from
the code that reads the value.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import sys
import typing
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from perdure.eventlog._errors import SerializationError
from perdure.eventlog._json import fresh


def _scalar_parser(cls: Any) -> Callable[[str], Any] | None:
    """How to parse the stored text of a tagged scalar type, or None for other types."""
    if cls is datetime.datetime or cls is datetime.date or cls is datetime.time:
        return cls.fromisoformat
    if cls is uuid.UUID:
        return uuid.UUID
    # `decimal` is not imported for this: code that declares Decimal has imported it.
    decimal = sys.modules.get("decimal")
    if decimal is not None and cls is decimal.Decimal:
        return decimal.Decimal  # type: ignore[no-any-return]
    return None


def _structure_scalar(value: Any, cls: type) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected text for {cls.__name__}, got {type(value).__name__}")
    parse = _scalar_parser(cls)
    assert parse is not None
    return parse(value)


def _is_pydantic_model(cls: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)


_converter: list[Any] = []  # the cattrs converter, made on first use (importing cattrs is slow)


def converter() -> Any:
    """The cattrs converter that rebuilds declared types (made on first use: `import
    perdure` does not pay for cattrs; only code that declares such types does)."""
    if not _converter:
        import cattrs

        made = cattrs.Converter(detailed_validation=False)
        made.register_structure_hook_func(
            lambda cls: _scalar_parser(cls) is not None, _structure_scalar
        )
        made.register_structure_hook_func(
            _is_pydantic_model, lambda value, cls: cls.model_validate(value)
        )
        _converter.append(made)
    return _converter[0]


def _rebuildable(hint: Any, seen: set[int]) -> bool:
    """Whether `hint` names, anywhere inside it, a type whose stored form is not itself."""
    if id(hint) in seen:
        return False
    seen.add(id(hint))
    if isinstance(hint, type):
        if _scalar_parser(hint) is not None or _is_pydantic_model(hint):
            return True
        if issubclass(hint, enum.Enum):
            return True
        if dataclasses.is_dataclass(hint) or attrs.has(hint):
            return True
    return any(_rebuildable(arg, seen) for arg in typing.get_args(hint))


def declared_type(hint: Any) -> Any:
    """`hint` if values declared with it need rebuilding from their stored form, else None.

    None means plain JSON, as for an undeclared value: an annotation like
    ``dict[str, Any]`` or ``int`` changes nothing.
    """
    if hint is None or hint is inspect.Parameter.empty or hint is Any:
        return None
    try:
        return hint if _rebuildable(hint, set()) else None
    except TypeError:  # an annotation that is not a type (a string left unresolved, ...)
        return None


class Declared:
    """The declared type of one parameter (or ``"return"``) of `fn`, resolved on first use.

    For annotations that could not be evaluated when `fn` was decorated: with
    ``from __future__ import annotations`` they may name a class defined further
    down the module.
    """

    __slots__ = ("_exclude", "_fn", "_name", "_resolved", "_type")

    def __init__(self, fn: Callable[..., Any], name: str, exclude: tuple[Any, ...] = ()) -> None:
        self._fn = fn
        self._name = name
        self._exclude = exclude
        self._type: Any = None
        self._resolved = False

    def get(self) -> Any:
        """The rebuildable type (see `declared_type`), or None for plain JSON."""
        if not self._resolved:
            try:
                hints = typing.get_type_hints(self._fn)
            except Exception:  # still unresolvable (a class local to a function): plain JSON
                return None
            hint = hints.get(self._name)
            self._type = None if _excluded(hint, self._exclude) else declared_type(hint)
            self._resolved = True
        return self._type

    def __repr__(self) -> str:
        return f"Declared({getattr(self._fn, '__qualname__', self._fn)!r}, {self._name!r})"


def _excluded(hint: Any, exclude: tuple[Any, ...]) -> bool:
    """Whether `hint` is one of `exclude`'s classes, a subclass, or a generic of one
    (``entrypoint.final[str, int]``)."""
    if not exclude:
        return False
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(origin, exclude)


def declared_types(
    fn: Callable[..., Any], exclude: tuple[Any, ...] = ()
) -> tuple[dict[str, Any], Any]:
    """The rebuildable types `fn` declares: ({parameter: type}, return type), None for plain.

    Annotations that cannot be evaluated yet become `Declared` (resolved when first
    needed); `restore` and `rebuild` accept both. Annotations in `exclude` (such as
    ``entrypoint.final[...]``, which declares no value type) count as undeclared.
    """
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # a forward reference not defined yet: resolve on first use
        names = getattr(fn, "__annotations__", {})
        params = {name: Declared(fn, name, exclude) for name in names if name != "return"}
        return params, Declared(fn, "return", exclude) if "return" in names else None
    params = {}
    for name, hint in hints.items():
        wanted = None if _excluded(hint, exclude) else declared_type(hint)
        if wanted is not None and name != "return":
            params[name] = wanted
    result = hints.get("return")
    return params, None if _excluded(result, exclude) else declared_type(result)


def restore(stored: Any, hint: Any) -> Any:
    """A stored value as user code sees it: `hint` rebuilt (see `declared_type`), or plain JSON."""
    plain = fresh(stored)
    if hint is None:
        return plain
    return rebuild(plain, hint)


def rebuild(plain: Any, hint: Any, what: str = "value") -> Any:
    """Build `hint` from plain JSON (already `fresh`); a mismatch is a `SerializationError`."""
    if type(hint) is Declared:
        hint = hint.get()
        if hint is None:
            return plain
    try:
        return converter().structure(plain, hint)
    except Exception as exc:
        name = _type_name(hint)
        raise SerializationError(
            f"{what}: the stored value {_short(plain)} cannot be turned into the declared type "
            f"{name} ({type(exc).__name__}: {exc}); declare the type the value was stored "
            "as, or Any for plain JSON",
            path=what,
            type_name=name,
        ) from None


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return str(hint).replace("typing.", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
