import pytest

from mailer.mail.templates import check_template, render


def test_known_variables_pass_and_render() -> None:
    assert check_template("--subject", "Hi {{ name }}", ["name", "email"], html=False) == []
    assert render("Hi {{ name }}", {"name": "Анна"}, html=False) == "Hi Анна"


def test_html_autoescapes_values() -> None:
    assert render("<p>{{ name }}</p>", {"name": "<b>"}, html=True) == "<p>&lt;b&gt;</p>"


def test_unknown_variable_named_with_its_line() -> None:
    source = "Hello\n{{ frist_name }}\n{% for x in items %}{{ x }}{% endfor %}"
    problems = check_template("body.html", source, ["name", "email"], html=True)
    assert problems == [
        "body.html:2: unknown variable 'frist_name' (the CSV has: email, name)",
        "body.html:3: unknown variable 'items' (the CSV has: email, name)",
    ]


def test_syntax_error_named_with_its_line() -> None:
    problems = check_template("body.txt", "ok\n{{ name }\n", ["name"], html=False)
    assert len(problems) == 1
    assert problems[0].startswith("body.txt:2: template syntax error:")


def test_unknown_filter_is_an_error() -> None:
    problems = check_template("--subject", "{{ name|shout }}", ["name"], html=False)
    assert problems == ["--subject: template error: No filter named 'shout'."]


def test_locally_set_variables_are_not_unknown() -> None:
    assert check_template("t", "{% set x = name %}{{ x }}", ["name"], html=False) == []


# Pieces of templates, put together three at a time below: plain substitutions and what must
# not be mistaken for one (Jinja's literals and globals, whitespace control, filters, a
# brace before a substitution, other markup, line ends, a variable no recipient has).
TEMPLATE_PIECES = [
    "Hi ",
    "{{ name }}",
    "{{name}}",
    "{{\tcity }}",
    "{",
    "}}",
    "{{- name }}",
    "{{ name|upper }}",
    "{{ none }}",
    "{{ range }}",
    "{% if name %}yes{% endif %}",
    "{# note #}",
    "\r\n",
    "\r",
    "\n",
    "<&>\"'",
]
RECIPIENT = {"name": "Ann <a&b> \"q\" 'x'", "city": "Тверь\r\n", "count": 3}


def test_templates_rendered_without_jinja_come_out_exactly_as_jinja_renders_them() -> None:
    """Every template of up to three pieces, in text and HTML: the same text as Jinja's own
    rendering, or the same error."""
    from itertools import product

    from mailer.mail.templates import _jinja_render, _substitutions

    without_jinja = 0
    for size in (1, 2, 3):
        for pieces in product(TEMPLATE_PIECES, repeat=size):
            source = "".join(pieces)
            for html in (False, True):
                try:
                    expected: object = _jinja_render(source, RECIPIENT, html=html)
                except Exception as exc:
                    expected = type(exc)
                try:
                    got: object = render(source, RECIPIENT, html=html)
                except Exception as exc:
                    got = type(exc)
                assert got == expected, (source, html)
                without_jinja += _substitutions(source) is not None
    assert without_jinja > 1000  # the fast path was taken, not only Jinja


def test_a_substitution_of_a_variable_the_recipient_lacks_fails_as_in_jinja() -> None:
    from jinja2.exceptions import UndefinedError

    with pytest.raises(UndefinedError, match="'city' is undefined"):
        render("Hi {{ city }}", {"name": "Ann"}, html=False)


def test_a_substituted_text_over_the_budget_is_refused() -> None:
    from mailer.mail.templates import MAX_RENDERED_CHARS, TemplateBudgetExceeded

    with pytest.raises(TemplateBudgetExceeded, match="over 1,000,000 characters"):
        render("{{ a }}{{ a }}", {"a": "x" * (MAX_RENDERED_CHARS // 2 + 1)}, html=False)
