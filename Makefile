# eventray: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EVENTRAY := $(VENV)/bin/eventray
STAMP := $(VENV)/.installed
# system packages the local stack needs; `make deps` installs the missing ones when root
APT_JAVA := openjdk-17-jre-headless
APT_MAVEN := maven
APT_POSTGRES := postgresql
APT_VENV := python3-venv
APT_IPROUTE := iproute2

.PHONY: deps venv demo test unit integration up down status clean typecheck chaos cluster-e2e

deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing $(APT_JAVA)"; \
	command -v mvn >/dev/null || missing="$$missing $(APT_MAVEN)"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
	  || missing="$$missing $(APT_POSTGRES)"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || test -x $(PY) || missing="$$missing $(APT_VENV)"; \
	command -v tc >/dev/null && command -v ip >/dev/null || missing="$$missing $(APT_IPROUTE)"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
	  echo "missing system packages:$$missing -- install them with: sudo apt-get install -y$$missing" >&2; exit 1; \
	fi

$(STAMP): pyproject.toml | deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

up: deps $(STAMP)
	$(EVENTRAY) dev up

down: $(STAMP)
	$(EVENTRAY) dev down

status: $(STAMP)
	$(EVENTRAY) dev status

demo: up
	$(EVENTRAY) demo

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

integration: up
	$(PY) -m pytest tests/integration -q

test: up
	$(PY) -m pytest -q

# The chaos suite (each fault command, the dashboard check), then 10 minutes of seeded faults
# (every kind the stack supports), on a separate stack of its own
chaos: deps $(STAMP)
	$(PY) -m pytest tests/chaos -q --deselect tests/chaos/test_monkey.py::test_monkey_loses_nothing
	EVENTRAY_MONKEY_DURATION=$${EVENTRAY_MONKEY_DURATION:-600} $(PY) -m pytest tests/chaos/test_monkey.py -q -s

# A real `ray up` of the local-provider config over SSH to 127.0.0.1, `eventray deploy`, GraphQL
# over HTTP, `ray down` (root: installs openssh-server and rsync). Kept out of `make test`: the
# cluster launcher's own commands (`ray down` runs a plain `ray stop` on the head) would stop every
# Ray process on the machine; tests/cluster_e2e/cluster_e2e.py gives its head other ports and temp
# dir and turns that `ray stop` into a stop of the e2e head only (see its docstring).
# Uses the dev stack's Kafka and PostgreSQL, with a topic and a database of its own.
cluster-e2e: up
	$(PY) tests/cluster_e2e/cluster_e2e.py

# mypy cannot follow the editable install's import hook, so it checks a tree of links that
# lays the folders out as the installed package is.
typecheck: $(STAMP)
	@mkdir -p build/typecheck/eventray
	@for d in platform aggregates sagas projections serving; do ln -sfn ../../../$$d build/typecheck/eventray/$$d; done
	cd build/typecheck && ../../$(PY) -m mypy -p eventray.platform -p eventray.aggregates

clean:
	rm -rf $(VENV) build dist *.egg-info
