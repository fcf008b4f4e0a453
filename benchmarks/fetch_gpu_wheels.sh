#!/usr/bin/env bash
# Download, into .whl/ (ignored by git), the wheels benchmarks/gpu_check.sh installs on the GPU machine, where nothing
# can be fetched: this project's transformers and accelerate (its image has older ones, or none) and datasets with the
# two packages of it that image lacks. Pure-Python wheels for the GPU machine's Python 3.12. Carry .whl along with the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "transformers==$(version transformers)" "datasets==$(version datasets)" "dill==$(version dill)" \
    "multiprocess==$(version multiprocess)" "accelerate==$(version accelerate)"
ls -la .whl
