# Every target bootstraps .venv by itself, so a fresh clone needs only `make demo` / `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench bench-quick bench-quota bench-peers wheel-smoke clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,redis]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict src

demo: $(STAMP)
	$(BIN)/llmroute demo

# the built wheel, installed in a fresh venv outside the repository (what CI runs)
wheel-smoke: $(STAMP)
	PYTHON=$(BIN)/python .ci/wheel-smoke.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

# The quota benchmark: a backlog against the quota-enforcing fake (a few minutes).
bench-quota: $(STAMP)
	$(BIN)/python bench/quota.py

# Peers for side-by-side figures, in their own venv: never the project's, never in CI.
# LiteLLM is pinned; 1.107.0 was a compromised release and must not be installed.
PEERS := .venv-peers
LITELLM := litellm==1.110.2

bench-peers: $(PEERS)/.installed

$(PEERS)/.installed:
	$(PY) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q '$(LITELLM)'
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PEERS)/bin/python -c "import litellm, importlib.metadata as m; v = m.version('litellm'); assert v == '$(LITELLM)'.split('==')[1], v"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
