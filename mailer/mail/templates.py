"""Subject and bodies are Jinja2 templates, rendered in a sandbox with strict undefined.

Checking happens at create time (syntax, unknown variables) so that a campaign never
fails half-way through because of a typo in a placeholder.

Templates are untrusted (whoever authors a campaign writes them), so rendering has a
budget besides Jinja's sandbox: repeating a string or list (``'x' * 10**8``), a power with
a large exponent (``9 ** (9 ** 9)``) and large numbers passed to any call (``range``,
``ljust``, ``center``...) are refused, and never folded at compile time (where
``'x' * 2 * 10**9`` once ran out of memory); ``lipsum`` is not offered; and a message's
rendered text stops at :data:`MAX_RENDERED_CHARS`. Loops that render nothing but spin
are bounded by time at create (operations.authoring.rehearsal).

A template that is only text and ``{{ name }}`` substitutions (most subjects, and bodies
like the demo's) is rendered without Jinja, to exactly what Jinja renders: a message's three
renders take 3.5 µs instead of 8.7 (:func:`_substitutions`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

# What one rendering may produce and compute.
MAX_RENDERED_CHARS = 1_000_000  # per subject or body of one message
MAX_SEQUENCE = 100_000  # the length of a string or list a template builds by * or +
MAX_NUMBER_ARGUMENT = 100_000  # ints passed to any call (range, ljust, center, truncate...)
MAX_EXPONENT = 64

# ``{{ name }}`` and nothing else inside: no filter, attribute, whitespace control or literal.
_SUBSTITUTION = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
# What starts any other Jinja markup in the text around substitutions.
_MARKUP_STARTS = ("{{", "{%", "{#")
# Names Jinja reads as literals or its own, never as the recipient's variables.
_NOT_VARIABLES = frozenset(
    {"true", "false", "none", "True", "False", "None", "self", "loop", "caller", "super"}
)
# Jinja's lexer writes every line end in the template's text as "\n".
_LINE_ENDS = re.compile(r"\r\n|\r")


class TemplateBudgetExceeded(SecurityError):
    """A template asked for more than its budget; the message names the limit."""


def _check_number(value: object, where: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER_ARGUMENT:
        raise TemplateBudgetExceeded(
            f"a number over {MAX_NUMBER_ARGUMENT:,} passed to {where} ({value:,})"
        )


def _sized(value: object) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


class BudgetedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox with a budget for what one message may build (see the module's
    docstring). Intercepted operators are never constant-folded at compile time."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise TemplateBudgetExceeded(f"an exponent over {MAX_EXPONENT} ({right})")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                size = _sized(sequence)
                if size is not None and isinstance(times, int) and size * times > MAX_SEQUENCE:
                    raise TemplateBudgetExceeded(
                        f"repeating a value to {size * times:,} items, over {MAX_SEQUENCE:,}"
                    )
        if operator == "+":
            sizes = (_sized(left), _sized(right))
            if None not in sizes and sum(s or 0 for s in sizes) > MAX_SEQUENCE:
                raise TemplateBudgetExceeded(f"joining values over {MAX_SEQUENCE:,} items")
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # noqa: N805 (Jinja's signature: arguments may be named "self")
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        for value in (*args, *kwargs.values()):
            _check_number(value, "a call")
        return super().call(__context, __obj, *args, **kwargs)


def _environment(*, html: bool) -> BudgetedEnvironment:
    env = BudgetedEnvironment(
        undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True
    )
    env.globals.pop("lipsum", None)  # lipsum(10**6) renders a book per message
    for name in ("center", "indent", "truncate", "wordwrap", "format"):
        env.filters[name] = _bounded(env.filters[name])
    return env


def _bounded(jinja_filter: Any) -> Any:
    """A filter whose number arguments (a width: ``center(10**9)``) stay within budget:
    filters are called directly, not through the sandbox's ``call``."""

    @functools.wraps(jinja_filter)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            _check_number(value, "a filter")
        return jinja_filter(*args, **kwargs)

    return bounded


_TEXT_ENV = _environment(html=False)
_HTML_ENV = _environment(html=True)


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
    template = _env(html).from_string(source)
    # Jinja keeps a template's globals as a ChainMap over the environment's, and copies them
    # into a new context at every render through Python-level iteration: two thirds of a
    # render's CPU for templates as short as a subject. Neither changes after start-up, so
    # one plain dict holds the same names and is copied in C.
    template.globals = dict(template.globals)
    return template


@functools.lru_cache(maxsize=256)
def _substitutions(source: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``source`` as its texts and the names substituted between them (one text more than
    names), if it is only text and ``{{ name }}`` substitutions; else None (Jinja renders).

    A text ending in ``{`` is refused too: before ``{{ name }}`` it would make ``{{{``, where
    Jinja's lexer starts the substitution one character earlier."""
    texts: list[str] = []
    names: list[str] = []
    last = 0
    for match in _SUBSTITUTION.finditer(source):
        texts.append(source[last : match.start()])
        names.append(match.group(1))
        last = match.end()
    texts.append(source[last:])
    if any(name in _NOT_VARIABLES for name in names):
        return None
    for text in texts:
        if any(start in text for start in _MARKUP_STARTS):
            return None
    if any(text.endswith("{") for text in texts[:-1]):
        return None
    return tuple(_LINE_ENDS.sub("\n", text) for text in texts), tuple(names)


def _substituted(
    texts: tuple[str, ...], names: tuple[str, ...], context: Mapping[str, object], html: bool
) -> str | None:
    """What Jinja renders for these texts and names (``str`` of each value, escaped for
    HTML); None if a name is not the recipient's (Jinja's globals, or StrictUndefined's
    error, are Jinja's to give)."""
    pieces = [texts[0]]
    for name, text in zip(names, texts[1:], strict=True):
        if name not in context:
            return None
        value = context[name]
        pieces.append(str(escape(value)) if html else str(value))
        pieces.append(text)
    return "".join(pieces)


def render(source: str, context: Mapping[str, object], *, html: bool) -> str:
    """Render a checked template for one recipient, within :data:`MAX_RENDERED_CHARS`."""
    simple = _substitutions(source)
    if simple is not None and (rendered := _substituted(*simple, context, html)) is not None:
        if len(rendered) > MAX_RENDERED_CHARS:
            raise TemplateBudgetExceeded(
                f"the rendered text is over {MAX_RENDERED_CHARS:,} characters"
            )
        return rendered
    return _jinja_render(source, context, html=html)


def _jinja_render(source: str, context: Mapping[str, object], *, html: bool) -> str:
    """Jinja's rendering of ``source``, stopped at :data:`MAX_RENDERED_CHARS`."""
    pieces: list[str] = []
    size = 0
    for piece in _compiled(source, html).generate(dict(context)):
        size += len(piece)
        if size > MAX_RENDERED_CHARS:
            raise TemplateBudgetExceeded(
                f"the rendered text is over {MAX_RENDERED_CHARS:,} characters"
            )
        pieces.append(piece)
    return "".join(pieces)
