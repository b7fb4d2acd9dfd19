"""Shared code for the agent-tuning stage scripts (01_collect.py ... 05_eval.py)."""
