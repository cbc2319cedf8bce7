# The command index. Every target works on a fresh clone with only python3 (3.11+) installed;
# tools run from .venv/bin, so nothing needs activating.
#
#   make run         install, migrate, seed demo data, serve on http://127.0.0.1:5000
#   make test        the test suite (SQLite + fakeredis, or DATABASE_URL / REDIS_URL if set)
#   make test-pg     the test suite against a throwaway PostgreSQL + Redis (as CI does)
#   make check       lint + format check + types + tests: what CI runs
#   make fmt         format and autofix
#   make migrate     alembic upgrade head
#   make migration m="add residents"   autogenerate migrations/versions/NNNN_add_residents.py
#   make worker      rq worker (needs REDIS_URL)
#   make cron        rq cron scheduler for app/cron.py (needs REDIS_URL)
#   make bench       run every bench/*.py script

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Type-checked code: the packages that exist (a clean clone has no empty directories) + wsgi.py.
MYPY_PATHS := $(foreach p,app payments notifications miniprogram_api,$(if $(wildcard $(p)/*.py),$(p))) wsgi.py
HOST ?= 127.0.0.1
PORT ?= 5000

.DEFAULT_GOAL := help
.PHONY: help install run test test-pg check lint typecheck fmt migrate migration worker cron bench

help:
	@sed -n 's/^#   make /make /p' Makefile

# The venv is rebuilt when pyproject.toml changes; otherwise `make install` does nothing.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

run: install
	$(BIN)/alembic upgrade head
	$(BIN)/flask --app wsgi seed-demo
	LUOHU_EMBEDDED_WORKER=1 $(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT) --no-reload

test: install
	$(BIN)/pytest

# Throwaway PostgreSQL + Redis (scripts/test-services.sh), stopped whatever the outcome.
test-pg: install
	@SERVICES_STATE=$$(mktemp -d /tmp/luohu-services.XXXXXX); export SERVICES_STATE; \
	trap 'scripts/test-services.sh stop' EXIT; \
	services=$$(scripts/test-services.sh start); eval "$$services"; \
	echo "DATABASE_URL=$$DATABASE_URL REDIS_URL=$$REDIS_URL"; \
	$(BIN)/pytest

check: lint typecheck test

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy $(MYPY_PATHS)

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install
	$(BIN)/alembic upgrade head

# Revision ids are numbered (0002_add_residents) and fit alembic_version's 32 characters.
migration: install
	@test -n "$(m)" || { echo 'usage: make migration m="what changed"' >&2; exit 2; }
	@last=$$(ls migrations/versions | sed -n 's/^\([0-9]\{4\}\)_.*\.py$$/\1/p' | sort | tail -1); \
	number=$$(printf '%04d' $$((10#$${last:-0} + 1))); \
	slug=$$(printf '%s' "$(m)" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '_' | sed 's/^_*//; s/_*$$//' | cut -c1-27 | sed 's/_*$$//'); \
	$(BIN)/alembic revision --autogenerate --rev-id "$${number}_$${slug:-change}" -m "$(m)"

worker: install
	@test -n "$${REDIS_URL:-}" || { echo "REDIS_URL must point to the Redis server of the queues" >&2; exit 2; }
	$(BIN)/rq worker --with-scheduler --url "$$REDIS_URL" default notifications payments

cron: install
	@test -n "$${REDIS_URL:-}" || { echo "REDIS_URL must point to the Redis server of the queues" >&2; exit 2; }
	$(BIN)/rq cron --url "$$REDIS_URL" app/cron.py

# Benchmarks are not part of the test suite; helpers (e.g. _data.py) start with an underscore.
bench: install
	@for script in bench/*.py; do \
	  [ -e "$$script" ] || { echo "no benchmarks in bench/"; break; }; \
	  case "$$(basename "$$script")" in _*) continue ;; esac; \
	  echo "== $$script"; $(BIN)/python "$$script" || exit 1; \
	done
