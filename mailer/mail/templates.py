"""Subject and bodies are Jinja2 templates, rendered in a sandbox with strict undefined.

Checking happens at create time (syntax, unknown variables) so that a campaign never
fails half-way through because of a typo in a placeholder.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import SandboxedEnvironment

_TEXT_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_HTML_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True
)


def _env(html: bool) -> SandboxedEnvironment:
    return _HTML_ENV if html else _TEXT_ENV


def check_template(
    label: str,
    source: str,
    variables: Iterable[str],
    *,
    html: bool,
    builtins: Iterable[str] = (),
) -> list[str]:
    """Problems with ``source`` (one line each, prefixed with ``label``); empty if fine.

    ``label`` is where the template came from: a file name or an option such as ``--subject``.
    ``variables`` are the CSV's columns; ``builtins`` names mailer provides to every message.
    """
    env = _env(html)
    # Files get file:line locations; an option such as --subject is named on its own.
    numbered = not label.startswith("-")
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        where = f"{label}:{exc.lineno}" if numbered else label
        return [f"{where}: template syntax error: {exc.message}"]
    known = set(variables)
    try:
        # Compiling catches what parsing does not, such as an unknown filter.
        unknown = find_undeclared_variables(tree) - known - set(builtins)
    except TemplateSyntaxError as exc:
        return [f"{label}: template error: {exc.message}"]
    if not unknown:
        return []
    first_line: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.name in unknown:
            first_line.setdefault(node.name, node.lineno)
    available = ", ".join(sorted(known)) or "none"
    problems = []
    for name in sorted(unknown, key=lambda n: (first_line.get(n, 0), n)):
        where = f"{label}:{first_line[name]}" if numbered else label
        problems.append(f"{where}: unknown variable {name!r} (the CSV has: {available})")
    return problems


@functools.lru_cache(maxsize=256)
def _compiled(source: str, html: bool):  # type: ignore[no-untyped-def]
    return _env(html).from_string(source)


def render(source: str, context: Mapping[str, object], *, html: bool) -> str:
    """Render a checked template for one recipient."""
    return str(_compiled(source, html).render(dict(context)))
