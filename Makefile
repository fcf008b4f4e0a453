# The README's two commands. Both build .venv from this project's own files when it is missing, and are idempotent.
# torch is installed first and pinned; from PyPI alone a Linux `pip install torch` pulls a multi-GB CUDA build (set
# TORCH_INDEX below for the CPU wheel), and torchvision / timm must never be installed next to it (they break
# transformers' ViT imports).
# GPU users: make demo TORCH_INDEX=<a CUDA wheel index>
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu to force the CPU wheel where PyPI would give a CUDA one
TORCH_INDEX ?=
EXTRAS ?= faces,retrieval,bench,benchmarks,realfaces,test
PIP := $(VENV)/bin/python -m pip
STAMP := $(VENV)/.pros_hf-installed

.PHONY: demo test test-fast lint install bench docs clean

install: $(STAMP)

$(STAMP): setup.py Makefile pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/demo.py

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests -q

# the tests not marked slow (whole scripts end to end, multi-process and compiled runs): a few minutes
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest tests -q -m "not slow"

# ruff's linter and formatter, configured in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check src examples tests benchmarks docs
	$(VENV)/bin/ruff format --check src examples tests benchmarks docs

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_backbone.py

# the result tables of docs/ from docs/results/*.json (standard library only: no .venv needed)
docs:
	$(PYTHON) docs/make_tables.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
