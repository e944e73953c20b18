# The two commands of the README:
#   make demo   set-up, then compress the shipped teacher (quick preset) and print the table
#   make test   set-up, then the test suite (what CI runs)
# Set-up is idempotent: the virtual env lives outside the clone, keyed by a hash of
# pyproject.toml, so a second run (and CI on the same machine) reuses it.

SHELL := /bin/bash
PY_HASH := $(shell (sha256sum pyproject.toml 2>/dev/null || shasum -a 256 pyproject.toml) | cut -c1-12)
VENV ?= $(HOME)/.cache/gankd/venv-$(PY_HASH)
PY := $(VENV)/bin/python
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= runs/demo

.PHONY: setup data demo test lint clean

setup: $(VENV)/.installed data
	@# the shared venv's editable install must point at THIS checkout (another clone may have re-pointed it)
	@cd / && $(PY) -c 'import os, sys, gankd; sys.exit(os.path.realpath(gankd.__file__) != sys.argv[1])' \
	  "$$(realpath $(CURDIR)/gankd/__init__.py)" 2>/dev/null || $(PY) -m pip install -q --no-deps -e '$(CURDIR)'

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "gankd: python3 >= 3.10 is required: install it (apt-get install python3 python3-venv)"; exit 1; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "gankd: python3 >= 3.10 is required, found $$(python3 --version)"; exit 1; }
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { echo "gankd: python3 venv is missing: apt-get install python3-venv"; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS) || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data:
	@if [ -n "$$GANKD_DATA" ] || [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null || { echo "gankd: apt-get install dataset-fashion-mnist failed: install it by hand or set GANKD_DATA"; exit 1; }; \
	else echo "gankd: Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or set GANKD_DATA to a folder with its .gz files"; exit 1; fi

demo: setup
	$(PY) -m gankd demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest tests

lint: setup
	$(VENV)/bin/ruff check gankd tests benchmarks

clean:
	rm -rf runs .pytest_cache
