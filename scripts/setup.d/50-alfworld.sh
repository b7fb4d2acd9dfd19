#!/usr/bin/env bash
# ALFWorld's engine: alfworld (name demangling, task wrappers) on TextWorld's PDDL backend with the
# Fast Downward planner (built from source here: needs cmake, g++, make; a few minutes).
# --no-deps because the declared dependencies drag in what we do not use: jericho (Z-machine
# games) wants spaCy and its stack, alfworld's extras want torch/torchvision/ai2thor. textworld
# imports jericho at import time, so jericho itself is installed, without spaCy (only jericho's
# optional text helpers use it). These pins are the real runtime needs of textworld[pddl] 1.7.0.
# fast-downward's build runs a bare `python build.py`: the venv's bin goes first on PATH so that is
# the venv's Python (a pyenv shim there ran a Python without its standard library).
set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -c "import alfworld.agents.environment.alfred_tw_env, fast_downward" 2>/dev/null || \
  .venv/bin/pip install -q --no-deps \
    alfworld==0.4.2 textworld==1.7.0 tatsu==5.8.3 fast-downward-textworld==20.6.4 jericho==3.3.1 \
    hashids==1.3.1 mementos==1.3.1 more-itertools==11.2.1 termcolor==3.3.0 prompt_toolkit==3.0.53 \
    wcwidth==0.9.4
# unpack the game files once into the cache (~/.cache/agentune/alfworld/<split>)
.venv/bin/python -c "
from agentune.envs.alfworld_env import SPLITS, extract_split
for split in SPLITS:
    print('alfworld', split, '->', extract_split(split))"
