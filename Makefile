# Two set-up commands for users: `make demo` and `make test`. Everything installs into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration lint typecheck proto bench broker-start broker-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns about every editable install; the warning is not about this project
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/python -m dataflow.demo

test: install
	$(BIN)/ruff check dataflow tests
	$(BIN)/ruff format --check dataflow tests
	$(BIN)/mypy dataflow
	$(BIN)/pytest -q tests

test-unit: install
	$(BIN)/pytest -q tests/unit

test-integration: install
	$(BIN)/pytest -q tests/integration

lint: install
	$(BIN)/ruff check dataflow tests
	$(BIN)/ruff format --check dataflow tests

typecheck: install
	$(BIN)/mypy dataflow

# Regenerate the protobuf modules from dataflow/proto/*.proto (the generated files are committed).
proto: install
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. dataflow/proto/v2_dataplane.proto
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. dataflow/proto/chainer.proto

bench: install
	$(BIN)/python -m dataflow.bench

broker-start:
	deploy/local/kafka start

broker-stop:
	deploy/local/kafka stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .state
