# One command per published table/figure. Every Python target first bootstraps .venv.
SHELL := /bin/bash
PY := .venv/bin/python
VENV := .venv/.installed
TORCH := $(shell grep -E '^torch==' requirements.txt)
SCALE ?= tiny
export PYTHONPATH := $(CURDIR)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1

.PHONY: help setup test worlds base bench

help:
	@grep -E '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV): requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"      # CPU wheel first, so nothing pulls a CUDA build
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

setup: $(VENV) ## create/update .venv from requirements.txt

test: $(VENV) ## run the test suite (micro scale)
	$(PY) -m pytest -q tests

worlds: $(VENV) ## generate the synthetic worlds into data/worlds/ (cached) and their contact sheets
	$(PY) -m common.worlds --contact-sheets

bench: $(VENV) ## benchmark: params and s/step of the tiny model
	$(PY) scripts/bench_model.py

.PHONY: compare figures
compare: $(VENV) ## published vs reproduced + claim verdicts: results/COMPARISON.md, comparison.json, index.html, README status
	$(PY) scripts/compare.py

figures: $(VENV) ## redraw every figure from the results JSON (no training): results/<section>/fig-*.png|svg
	$(PY) scripts/figures.py
