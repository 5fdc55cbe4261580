# Every target creates the virtualenv and installs what it needs: nothing is installed by hand.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: venv test test-sqlite test-postgres run migrate clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## The whole suite, once on SQLite and once on PostgreSQL.
test: test-sqlite test-postgres

test-sqlite: venv
	DATABASE_URL=sqlite:// $(BIN)/pytest -q

test-postgres: venv
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -q

## The service on its embedded default: SQLite file in the working directory and, unless
## KAFKA_BOOTSTRAP_SERVERS is set, a local Kafka-protocol broker (tansu, memory only) on port 19092.
run: venv
	$(BIN)/groups-consumer migrate --no-input
	$(BIN)/groups-consumer consume

clean:
	rm -rf $(VENV) *.egg-info groups-consumer.sqlite3
