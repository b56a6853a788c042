"""The registry: which functions and workflows a runtime can run, by name."""

from __future__ import annotations

from typing import Any

from perdure.actors import TargetSpec
from perdure.runtime._errors import DuplicateNameError, UnknownTargetError
from perdure.runtime._ids import check_id


def _origin(source: Any) -> str:
    return getattr(source, "__module__", "?") or "?"


class Registry:
    """Names to targets. Decorators register into `default_registry` when applied."""

    def __init__(self) -> None:
        self._targets: dict[str, TargetSpec] = {}

    def register(self, spec: TargetSpec) -> None:
        """Add `spec`; a different object under a taken name from another module is an error.

        Re-defining a name in the same module (a reload, a notebook cell run
        twice, a test defining a workflow inside a function) replaces the old one.
        """
        check_id("name", spec.name)
        existing = self._targets.get(spec.name)
        if (
            existing is not None
            and existing.source is not spec.source
            and _origin(existing.source) != _origin(spec.source)
        ):
            raise DuplicateNameError(
                f"the name {spec.name!r} is already registered by {_origin(existing.source)}."
                f"{getattr(existing.source, '__qualname__', '?')}; give one of them another "
                f"name with name=...",
                name=spec.name,
            )
        self._targets[spec.name] = spec

    def get(self, name: str) -> TargetSpec | None:
        return self._targets.get(name)

    def names(self) -> list[str]:
        return sorted(self._targets)

    def resolve(self, target: Any) -> TargetSpec:
        """A target from a name or a decorated object (which is registered if it is not yet)."""
        if isinstance(target, str):
            spec = self._targets.get(check_id("target", target))
            if spec is None:
                import difflib  # only for this error's hint

                close = tuple(difflib.get_close_matches(target, self._targets, n=3, cutoff=0.6))
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                known = ", ".join(self.names()[:20]) or "none"
                raise UnknownTargetError(
                    f"no function or workflow named {target!r} is registered.{hint} "
                    f"Registered: {known}. Import the module that defines it before calling.",
                    name=target,
                    suggestions=close,
                )
            return spec
        spec = getattr(target, "__perdure_target__", None)
        if isinstance(spec, TargetSpec):
            if self._targets.get(spec.name) is not spec:
                self.register(spec)
            return spec
        raise TypeError(
            f"cannot run {target!r}: pass a registered name, or an object decorated with "
            "@function or @entrypoint"
        )


default_registry = Registry()
