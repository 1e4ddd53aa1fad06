# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean bench bench-full docs breakages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bigquery,snowflake,webhooks]'
	touch $(STAMP)

# BigQuery emulator for tests/test_bigquery.py, in its own venv: its sqlglot/duckdb pins
# clash with ours. Offline it cannot download DuckDB's spatial extension, so install it here.
BQEMULATOR_VENV := .venv-bqemulator
BQEMULATOR_STAMP := $(BQEMULATOR_VENV)/.installed

$(BQEMULATOR_STAMP):
	$(PYTHON) -m venv $(BQEMULATOR_VENV)
	$(BQEMULATOR_VENV)/bin/pip install --quiet bqemulator==1.4.0 duckdb==1.5.5 \
		duckdb-extensions==1.5.5 duckdb-extension-spatial==1.5.5 numpy
	$(BQEMULATOR_VENV)/bin/python -c \
		"from duckdb_extensions import import_extension; import_extension('spatial')"
	touch $@

install: $(STAMP)

# into leadrat_demo.duckdb, never the leadrat_warehouse.duckdb of a real `leadrat load`
demo: $(STAMP)
	$(BIN)/python pipelines/demo.py

test: $(STAMP) $(BQEMULATOR_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The breakage drill: breaks each guarded feature on purpose (in a temporary copy of the
# checkout) and reports any breakage the tests did not catch. Not part of `make test`.
breakages: $(STAMP) $(BQEMULATOR_STAMP)
	$(BIN)/python tests/breakages.py

lint: $(STAMP)
	$(BIN)/ruff check leadrat_source tests bench pipelines

# every performance target in one run: a table, and bench/results.json (see bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/bench_all.py

bench-full: $(STAMP)
	$(BIN)/python bench/bench_all.py --full

# docs/tables.md from the schema of a sandbox load (tests/test_table_docs.py checks it)
docs: $(STAMP)
	$(BIN)/python -m leadrat_source.tables_page

clean:
	rm -rf $(VENV) $(BQEMULATOR_VENV) .pytest_cache leadrat_warehouse.duckdb leadrat_demo.duckdb

# Airflow 3 in its own venv (its pins differ from ours); tests/test_airflow_dag.py runs
# the DAG in pipelines/ with .venv-airflow/bin/airflow. Built once, rebuilt when
# pyproject.toml changes.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
.PHONY: airflow-venv
$(AIRFLOW_STAMP): pyproject.toml
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet 'apache-airflow==3.3.*' \
		apache-airflow-providers-standard -e .
	touch $@
airflow-venv: $(AIRFLOW_STAMP)
test: $(AIRFLOW_STAMP)
