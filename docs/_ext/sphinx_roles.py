"""Griffe extension: render the Sphinx roles used in pycrm's docstrings.

pycrm's docstrings are written in the Sphinx style (``:class:`~pycrm.errors.CRMError```,
``:meth:`Stored.match_keys```). mkdocstrings parses the ``:param:`` fields but
leaves inline roles as literal text, so this extension rewrites each role into
an *optional* autorefs cross-reference: a link when the target is documented
on the site, plain code otherwise (never a build warning). It also turns the
reST ``::`` that introduces a literal block into a plain colon, and reads the
Sphinx ``#:`` comment above a constant as its docstring.

Loaded from ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
It only changes the docs build, never the source files.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`<>]+)`")
LITERAL_INTRO = re.compile(r"(?m)^(?P<text>.*\S)::[ \t]*$")
BARE_INTRO = re.compile(r"(?m)^[ \t]*::[ \t]*\n")


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj``, or None if it cannot be found."""
    if target.startswith("pycrm.") or target == "pycrm":
        return target
    head, _, rest = target.partition(".")
    scopes: list[Any] = [obj]
    parent = obj.parent
    while parent is not None:
        scopes.append(parent)
        parent = parent.parent
    for scope in scopes:
        try:
            if head in scope.members:
                member = scope.members[head]
                base = member.target_path if isinstance(member, griffe.Alias) else member.path
            else:
                base = scope.resolve(head)
        except Exception:  # an unresolvable name simply stays code
            continue
        return f"{base}.{rest}" if rest else base
    return None


def _render(obj: griffe.Object, match: re.Match[str]) -> str:
    role, short, target = match.groups()
    target = target.strip().lstrip(".")
    shown = target.rsplit(".", 1)[-1] if short else target
    if role in ("func", "meth"):
        shown += "()"
    code = f"<code>{html.escape(shown)}</code>"
    path = _resolve(obj, target)
    if path is None or not path.startswith("pycrm"):
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def convert(obj: griffe.Object, text: str) -> str:
    """Rewrite the roles and literal-block markers of one docstring."""
    text = ROLE.sub(lambda m: _render(obj, m), text)
    text = BARE_INTRO.sub("\n", text)
    return LITERAL_INTRO.sub(lambda m: m["text"] + ":", text)


def _comment_doc(attr: griffe.Attribute) -> str | None:
    """The ``#:`` comment lines right above an attribute, as text."""
    if attr.lineno is None:
        return None
    try:
        lines = attr.module.lines
    except Exception:  # no source, no comment
        return None
    found: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return "\n".join(found) or None


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx inline roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: Any = None, **kwargs: Any) -> None:
        self._parser = getattr(loader, "docstring_parser", None)
        self._options = getattr(loader, "docstring_options", None)
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is None and isinstance(obj, griffe.Attribute):
            text = _comment_doc(obj)
            if text is not None:
                obj.docstring = griffe.Docstring(
                    text,
                    lineno=obj.lineno,
                    parent=obj,
                    parser=self._parser,
                    parser_options=self._options,
                )
        if obj.docstring is not None:
            obj.docstring.value = convert(obj, obj.docstring.value)
        for member in obj.members.values():
            if isinstance(member, griffe.Alias):
                continue
            self._walk(member, seen)
