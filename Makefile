# Two commands on a fresh machine:
#   make study   -> installs everything and runs the paper's ablation table (quick preset, synthetic data)
#   make test    -> installs everything (plus test tools) and runs the test suite
PY ?= python

.PHONY: install install-dev test study

install:
	@# PyTorch first: on this project's CPU machines `torch==2.13.0` is the CPU build on disk; on a
	@# GPU machine pip resolves the normal CUDA build. An existing torch is kept.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e .

install-dev: install
	$(PY) -m pip install -e ".[dev]"
	bash scripts/install_chromium.sh
	bash scripts/install_iproute2.sh

test: install-dev
	$(PY) -m pytest -q

study: install
	$(PY) studies/ablation_table.py
