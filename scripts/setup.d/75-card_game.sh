#!/usr/bin/env bash
# Digital Card Game (AgentBench's Aquawar): build the C++ engine (g++) and the players' Python SDK
# (pybind11 + cmake) from AgentBench's source in the data directory into ~/.cache/agentune/card_game
# (about half a minute, once). The referee imports websockets (for remote human players only) and
# the LLM player imports requests.
set -euo pipefail
# (pybind11, websockets, requests are in requirements.txt)
.venv/bin/python -c "from agentune.envs.dcg_env import build; print('card game built in', build())"
