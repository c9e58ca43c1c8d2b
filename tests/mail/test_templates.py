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
