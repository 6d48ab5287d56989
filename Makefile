# One command per published table/figure. Every Python target first bootstraps .venv.
SHELL := /bin/bash
PY := .venv/bin/python
VENV := .venv/.installed
TORCH := $(shell grep -E '^torch==' requirements.txt)
SCALE ?= tiny
export PYTHONPATH := $(CURDIR)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1

.PHONY: help setup test worlds base bench learnability recipes eval

help:
	@grep -E '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV): requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"      # CPU wheel first, so nothing pulls a CUDA build
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'repo-root.pth').write_text('$(CURDIR)\n')"  # `python post01/x.py` imports common/
	@touch $@

setup: $(VENV) ## create/update .venv from requirements.txt

test: $(VENV) ## run the test suite (micro scale)
	$(PY) -m pytest -q tests

worlds: $(VENV) ## generate the synthetic worlds into data/worlds/ (cached) and their contact sheets
	$(PY) -m common.worlds --contact-sheets

bench: $(VENV) ## benchmark: params and s/step of the tiny model
	$(PY) scripts/bench_model.py

base: $(VENV) ## regenerate the committed tiny base checkpoint (pre-training, ≈1 h CPU)
	$(PY) scripts/make_base.py --scale $(SCALE)

learnability: $(VENV) ## issue #15: learnability candidates (base v3 vs v4, batch, objective, replay, LoRA) under one compute budget
	$(PY) scripts/learnability.py --scale $(SCALE) --jobs $${JOBS:-2} --threads 1

recipes: $(VENV) ## train every Post 01 / Post 02 recipe (cached by config hash)
	$(PY) scripts/eval_recipes.py --scale $(SCALE) --train-only

eval: $(VENV) ## score base + every recipe on watch / SA-Co-like / LVIS-like: results/recipes.{json,md}
	$(PY) scripts/eval_recipes.py --scale $(SCALE)

.PHONY: compare figures
compare: $(VENV) ## published vs reproduced + claim verdicts + stale/provenance lists: results/COMPARISON.md, comparison.json, index.html, README status
	$(PY) scripts/compare.py

figures: $(VENV) ## redraw every figure from the results JSON (no training, deterministic; exits 1 if a renderer fails): results/<section>/fig-*.png|svg
	$(PY) scripts/figures.py

.PHONY: rank-series
rank-series: $(VENV) ## rank series papers 81-88 (SCALE=tiny default; runs cached in data/cache/rank_series)
	$(PY) rank_series/paper86_true_gradient_er.py --scale $(SCALE)
	$(PY) rank_series/paper87_svd_coverage.py --scale $(SCALE)
	$(PY) rank_series/paper83_projected_gradient_er.py --scale $(SCALE)
	$(PY) rank_series/paper82_k_budget.py --scale $(SCALE)
	$(PY) rank_series/paper81_k_schedules.py --scale $(SCALE)
	$(PY) rank_series/paper84_adaptive_k.py --scale $(SCALE)
	$(PY) rank_series/paper85_bottom_k64.py --scale $(SCALE)
	$(PY) rank_series/paper88_er_matched_schedule.py --scale $(SCALE)

.PHONY: post02 presence-only
presence-only: $(VENV) ## Post 02 §5 Tables 5.1 + 5.2: retrain only the presence gate of lvis_replay (the repair; cached gate input)
	$(PY) post02/presence_only.py --scale $(SCALE)

post02: $(VENV) ## every Post 02 table and figure (results/post02/; presence_only first: later tables read its model)
	$(PY) post02/presence_only.py --scale $(SCALE)
	$(PY) post02/what_broke.py --scale $(SCALE)
	$(PY) post02/headline.py --scale $(SCALE)
	$(PY) post02/replay_vs_recovery.py --scale $(SCALE)
	$(PY) post02/train_eval_overlap.py --scale $(SCALE)
	$(PY) post02/activation_drift.py --scale $(SCALE)
	$(PY) post02/weight_movement.py --scale $(SCALE)
	$(PY) post02/bias_direction.py --scale $(SCALE)
	$(PY) post02/mech_interp.py --scale $(SCALE)

.PHONY: table-9.15 post01-lora post01-mech
table-9.15: $(VENV) ## Post 01 Table 9.15 + Fig 9.15: r=8 LoRA α ladder (watch IoU only; runs train in parallel, JOBS=n)
	$(PY) post01/alpha_ladder.py --scale $(SCALE)

post01-mech: $(VENV) ## Post 01 §1–§8: weight deltas, swap matrix, activation patching, text rotation, mask lens, fusion-only, concept geometry, OOD
	$(PY) post01/weight_delta.py --scale $(SCALE)
	$(PY) post01/swap_matrix.py --scale $(SCALE)
	$(PY) post01/activation_patching.py --scale $(SCALE)
	$(PY) post01/text_rotation.py --scale $(SCALE)
	$(PY) post01/mask_lens.py --scale $(SCALE)
	$(PY) post01/fusion_only.py --scale $(SCALE)
	$(PY) post01/concept_geometry.py --scale $(SCALE)
	$(PY) post01/out_of_domain.py --scale $(SCALE)

post01-lora: $(VENV) ## Post 01 §9–§12: LoRA on the fusion stack, rank saturation, α-boost / α-ladder, AdaLoRA, MP-rank LoRA
	$(PY) post01/signal_rank.py --scale $(SCALE)
	$(PY) post01/lora_ranks.py --scale $(SCALE)
	$(PY) post01/rank_saturation.py --scale $(SCALE)
	$(PY) post01/rslora_boost.py --scale $(SCALE)
	$(PY) post01/alpha_ladder.py --scale $(SCALE)
	$(PY) post01/alpha_vs_lr.py --scale $(SCALE)
	$(PY) post01/rank_trajectory.py --scale $(SCALE)
	$(PY) post01/adalora_init.py --scale $(SCALE)
	$(PY) post01/mp_prescription.py --scale $(SCALE)
	$(PY) post01/scorecard.py --scale $(SCALE)
