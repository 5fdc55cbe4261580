# Every target creates the virtualenv and installs what it needs: nothing is installed by hand.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: venv test-tools lint test test-sqlite test-postgres test-future run demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## Programs the tests drive besides Python packages: Debian's chromium for the staff UI (driven by Playwright,
## whose own browser download cannot work here) and wrk for the web benchmark's smoke test. Installed with apt
## when missing (root, or passwordless sudo).
test-tools:
	@command -v chromium >/dev/null && command -v wrk >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium wrk; }

## Lint (ruff: rules and import order) and type checks (mypy, strict), configured in pyproject.toml; fails on any
## violation (all always run, to report everything at once). The example plugin is type-checked from its own
## directory, with its own settings (its app installed), against the service's sources here (MYPYPATH: mypy
## cannot follow the editable install). .ci/run runs it before the tests.
lint: venv
	$(BIN)/ruff check groups_consumer criteria bench tests demo examples; status=$$?; $(BIN)/mypy || status=1; \
	  (cd examples/certificates && PYTHONPATH=. MYPYPATH=$(CURDIR) $(abspath $(BIN))/mypy) || status=1; exit $$status

## The whole suite, once on SQLite and once on PostgreSQL.
test: test-sqlite test-postgres

test-sqlite: venv test-tools
	DATABASE_URL=sqlite:// $(BIN)/pytest -q

test-postgres: venv test-tools
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -q

## The whole suite again with the wall clock of every Python process 12 months ahead (MONTHS=N to change),
## starting a minute before the end of a month: no test may pass only on the day it was written.
MONTHS ?= 12
test-future: venv test-tools
	DATABASE_URL=sqlite:// $(BIN)/python -m tests.future_clock --months $(MONTHS) -- $(BIN)/pytest -q
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m tests.future_clock --months $(MONTHS) -- $(BIN)/pytest -q

## The service on its embedded default: the consumer, the scheduler and the web process (the Procfile's lines)
## on a SQLite file in the working directory and, unless KAFKA_BOOTSTRAP_SERVERS is set, a local
## Kafka-protocol broker (tansu, memory only) on port 19092. The web process listens on PORT (8000); unless
## DJANGO_SECRET_KEY is set, a random key is made once and kept in .django-secret-key.
run: venv
	$(BIN)/groups-consumer migrate --no-input
	export DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat .django-secret-key 2>/dev/null || \
	    $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' | tee .django-secret-key)}"; \
	  $(BIN)/groups-consumer scheduler & scheduler=$$!; \
	  $(BIN)/groups-consumer serve & web=$$!; \
	  $(BIN)/groups-consumer relay & relay=$$!; \
	  trap 'kill -TERM $$scheduler $$web $$relay 2>/dev/null; wait $$scheduler $$web $$relay' EXIT; \
	  $(BIN)/groups-consumer consume

## A sample stream, produced with openedx-events' serializer, into the embedded default; shows the groups
## changing wave by wave (its own SQLite file, demo.sqlite3, and its own broker port).
demo: venv
	rm -f demo.sqlite3
	DATABASE_URL=sqlite:///$(CURDIR)/demo.sqlite3 $(BIN)/groups-consumer migrate --no-input -v 0
	DATABASE_URL=sqlite:///$(CURDIR)/demo.sqlite3 $(BIN)/groups-consumer apply demo/groups.json
	DATABASE_URL=sqlite:///$(CURDIR)/demo.sqlite3 EMBEDDED_KAFKA_PORT=19093 LOG_FORMAT=json \
	  $(BIN)/groups-consumer consume 2>demo-consumer.log & \
	  trap 'kill -TERM $$! 2>/dev/null; wait $$!' EXIT; \
	  sleep 2; \
	  DATABASE_URL=sqlite:///$(CURDIR)/demo.sqlite3 KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19093 $(BIN)/python demo/produce.py

## The brief's performance figures in one run on PostgreSQL (its own database, gc_bench) and the broker
## (KAFKA_BOOTSTRAP_SERVERS or an embedded tansu); results in bench/results/. ARGS="--quick" checks the
## benchmark in about a minute; ARGS="--help" lists the sizes.
bench: venv
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info groups-consumer.sqlite3 demo.sqlite3 demo-consumer.log staticfiles
