"""A griffe extension that turns perdure's docstring conventions into what mkdocstrings renders.

perdure's docstrings list options and fields as plain ``name: text`` lines
(continuation lines indented), which read well in ``help()`` but would run
together into one paragraph on the site. At build time, and without touching
the code, this extension rewrites such a block of a function or class
docstring into a Google-style ``Parameters:`` section when the names are the
object's parameters, and hands the text to the attribute itself when the
names are its attributes (so each field shows its own description). It also
turns a backticked public name (`Runtime`) into a link to its reference entry.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ITEM = re.compile(r"^(?P<names>[A-Za-z_]\w*(?:\s*/\s*[A-Za-z_]\w*)*):\s+(?P<text>\S.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _public_names() -> dict[str, str]:
    """Each public name and the id of its entry: the top level's names, then every error."""
    import perdure
    import perdure.errors

    names = {name: f"perdure.errors.{name}" for name in perdure.errors.__all__}
    names.update(
        (name, f"perdure.{name}")
        for name in perdure.__all__
        if not name.startswith("_") and name not in ("errors", "testing")  # modules
    )
    return names


class PerdureDocstrings(griffe.Extension):
    """Rewrite ``name: text`` blocks and link public names, on every object once it is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self._public = _public_names()
        self._link = re.compile(
            r"(?<![\[`\w])`("
            + "|".join(sorted(self._public, key=len, reverse=True))
            + r")`(?![`\]])"
        )

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None or obj.is_alias:
            return
        text = obj.docstring.value
        if obj.is_function or obj.is_class:
            text = self._fields(obj, text)
        obj.docstring.value = self._links(text)

    # -- name: text blocks ---------------------------------------------------------------

    def _fields(self, obj: griffe.Object, text: str) -> str:
        params = _parameters(obj)
        members = _attributes(obj) if obj.is_class else {}
        known = params | set(members)
        lines = text.splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            names = _names(lines[i], known)
            if not names or (out and out[-1].strip()):
                out.append(lines[i])
                i += 1
                continue
            items: list[tuple[list[str], str]] = []
            while i < len(lines):
                names = _names(lines[i], known)
                if names:
                    match = _ITEM.match(lines[i])
                    assert match is not None
                    items.append((names, match["text"]))
                elif lines[i].startswith((" ", "\t")) and lines[i].strip() and items:
                    items[-1] = (items[-1][0], f"{items[-1][1]} {lines[i].strip()}")
                else:
                    break
                i += 1
            section = []
            for names, description in items:
                for name in names:
                    member = members.get(name)
                    if name not in params and member is not None:
                        member.docstring = griffe.Docstring(description, parent=member)
                    else:
                        section.append(f"    {name}: {description}")
            if section:
                out.extend(["Parameters:", *section])
                if i < len(lines) and lines[i].strip():
                    out.append("")
        return "\n".join(out)

    # -- links ---------------------------------------------------------------------------

    def _links(self, text: str) -> str:
        out, fenced = [], False
        for line in text.splitlines():
            if _FENCE.match(line):
                fenced = not fenced
            out.append(
                line
                if fenced
                else self._link.sub(lambda m: f"[`{m[1]}`][{self._public[m[1]]}]", line)
            )
        return "\n".join(out)


def _names(line: str, known: set[str]) -> list[str]:
    """The names a ``name: text`` (or ``a / b: text``) line documents, if all are known."""
    match = _ITEM.match(line)
    if match is None:
        return []
    names = [name.strip() for name in match["names"].split("/")]
    return names if all(name in known for name in names) else []


def _parameters(obj: griffe.Object) -> set[str]:
    try:
        parameters = obj.parameters  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return set()
    return {p.name for p in parameters if p.name not in ("self", "cls")}


def _attributes(cls: griffe.Object) -> dict[str, griffe.Object]:
    """The class's attributes (and properties) that have no docstring of their own."""
    found: dict[str, griffe.Object] = {}
    for name, member in cls.members.items():
        if member.is_alias or member.docstring is not None:
            continue
        if member.is_attribute or (member.is_function and "property" in member.labels):
            found[name] = member
    return found
