# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv from the pinned requirements.lock (torch is the CPU build).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: venv demo test test-fast lint bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@$(BIN)/python -c "import torch,sys; sys.exit('a CUDA torch was installed; expected the CPU build' if torch.version.cuda else 0)"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/privehr demo

test: $(STAMP)
	$(BIN)/ruff check --no-cache src tests bench
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration and not deployment"

lint: $(STAMP)
	$(BIN)/ruff check --no-cache src tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) runs .pytest_cache
