# Developer entry points. Every target creates the virtualenv it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the package metadata changes.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

# Where `make run` keeps its sockets, checkpoint and CDI specs (no root needed).
RUN_DIR ?= $(CURDIR)/.run

.PHONY: run test unit e2e e2e-setup lint protos clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: start the driver on 8 mock GPUs, with its kubelet dirs under .run/
run: $(STAMP)
	$(BIN)/dra-cdi-driver --kubelet-dir $(RUN_DIR)/kubelet --cdi-root $(RUN_DIR)/cdi $(ARGS)

## test: lint, type-check, unit + integration tests, then the e2e suite on a local cluster
test: lint e2e-setup unit e2e

## unit: the unit and integration tests (real gRPC on unix sockets, no cluster)
# pytest exits 5 when it collects nothing: not a failure of the code under test.
unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/integration || [ $$? -eq 5 ]

## e2e-setup: build/fetch the local cluster's parts into ~/.cache (cold ~10 min, warm ~1 s)
e2e-setup:
	tests/e2e/local/setup.sh

## e2e: the end-to-end suite (E2E_PROVIDER=local|existing|kind; local needs e2e-setup, root)
e2e: $(STAMP)
	E2E_REQUIRE=$${E2E_REQUIRE:-1} $(BIN)/pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## protos: regenerate the gRPC stubs from protos/dra/
protos: $(STAMP)
	$(BIN)/python scripts/generate_protos.py

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
