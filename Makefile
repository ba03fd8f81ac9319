# eventray: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EVENTRAY := $(VENV)/bin/eventray
STAMP := $(VENV)/.installed

.PHONY: venv demo test unit integration e2e up down status clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(EVENTRAY) dev up

down: $(STAMP)
	$(EVENTRAY) dev down

status: $(STAMP)
	$(EVENTRAY) dev status

demo: up
	$(EVENTRAY) demo

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test: up
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info
