# The two fresh-machine commands: `make demo` (main job, end to end) and `make test`.
.PHONY: setup demo test bench
PY := .venv/bin/python

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/run_pipeline.sh

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/train_throughput.py
	$(PY) bench/collect_concurrency.py
	$(PY) bench/heldout_experts.py --limit=3
