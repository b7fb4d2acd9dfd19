"""What every stage script shares: --help prints its usage docstring and every setting with its
comment, and a bad setting is refused before anything is written."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["00_instruct.py", "01_collect.py", "02_filter.py", "03_mix.py", "04_train.py", "05_eval.py"]


@pytest.mark.parametrize("stage", STAGES)
def test_help_prints_usage_and_settings(stage):
    done = subprocess.run([sys.executable, stage, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Stage {stage[:2]}"), done.stdout[:200]
    assert "settings (override as --name=value):" in done.stdout
    assert "  --out_dir" in done.stdout and "  # " in done.stdout


def test_eval_refuses_a_bad_task_before_writing(tmp_path):
    out = tmp_path / "eval"
    done = subprocess.run([sys.executable, "05_eval.py", "--tasks=os,foo", f"--out_dir={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "unknown task 'foo'" in done.stderr + done.stdout
    assert not out.exists()
