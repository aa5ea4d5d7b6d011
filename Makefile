# `make train` and `make test` each install what they need first (idempotent, quiet).
PY ?= python3

.PHONY: install train test test-all lint

install:
	$(PY) -m pip install -q -e '.[dev]'

train: install
	$(PY) train.py $(ARGS)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ''

lint:
	ruff check . && ruff format --check .
