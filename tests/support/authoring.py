"""The authoring commands run in this process (typer's runner) with the files they read."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from starter import app

runner = CliRunner()


def run(*args: str) -> Result:
    """``mailer ARGS`` in this process."""
    return runner.invoke(app, list(args))


def create_args(files: dict[str, Path], **overrides: str | None) -> list[str]:
    options: dict[str, str | None] = {
        "--name": "Tariffs",
        "--subject": "{{ name }}, new tariffs",
        "--html": str(files["html"]),
        "--text": str(files["text"]),
        "--recipients": str(files["csv"]),
        "--created-by": "olga",
    }
    options.update(overrides)
    args = ["create"]
    for key, value in options.items():
        if value is not None:
            args += [key, value]
    return args
