#!/usr/bin/env bash
# The held-out environments: ScienceWorld (ships its simulator jar; runs on the Java from
# 20-apt.sh) and MiniWoB++ (task pages + gymnasium wrappers; we drive the Debian chromium and
# chromedriver from 20-apt.sh through Selenium). Their dependencies are light (py4j; selenium,
# gymnasium, pillow, numpy>=1.18) and leave torch/numpy/transformers as they are.
set -euo pipefail
# (both packages are in requirements.txt)
# the test list of ScienceWorld takes one simulator load per variation (~45 s): build it once
.venv/bin/python -c "from agentune.envs.sciworld_env import SciWorldEnv; print('sciworld test tasks:', len(SciWorldEnv.load_tasks(split='test')))"
