"""What every stage script shares: --help prints its usage docstring (examples, where outputs go)
and every setting with its comment, a bad setting is refused before anything is written, and
presets (04_train.py) apply before the other overrides."""
import os
import subprocess
import sys

import pytest

from agentune.config import configure

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["00_instruct.py", "01_collect.py", "02_filter.py", "03_mix.py", "04_train.py", "05_eval.py"]


def run(stage, *args):
    done = subprocess.run([sys.executable, stage, *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_help_prints_usage_and_settings(stage):
    returncode, output = run(stage, "--help")
    assert returncode == 0, output
    assert output.startswith(f"Stage {stage[:2]}"), output[:200]
    usage, settings = output.split("\nsettings (override as --name=value):\n")
    assert f"python {stage}" in usage and "Writes to out_dir" in usage and "config.json" in usage
    lines = [line for line in settings.split("\n\n")[0].splitlines() if line.strip()]
    assert any(line.startswith("  --out_dir ") for line in lines)
    assert all("  # " in line for line in lines), [line for line in lines if "  # " not in line]


# one bad value per stage, refused by its checks (not by a traceback) before out_dir exists
BAD_SETTINGS = {
    "00_instruct.py": ("--env=alfworld", "tasks are made for os and/or db only"),
    "01_collect.py": ("--workers=0", "--workers=0: at least 1"),
    "02_filter.py": ("--decontam_overlap=1.5", "--decontam_overlap=1.5: a share in (0, 1]"),
    "03_mix.py": ("--eta=2", "eta is a share"),
    "04_train.py": ("--precision=fp16", "--precision=fp16; known: auto, bf16, fp32"),
    "05_eval.py": ("--tasks=os,foo", "unknown task 'foo'"),
}


@pytest.mark.parametrize("stage", STAGES)
def test_a_bad_setting_is_refused_before_writing(stage, tmp_path):
    out = tmp_path / "out"
    bad, message = BAD_SETTINGS[stage]
    returncode, output = run(stage, bad, f"--out_dir={out}")
    assert returncode != 0 and message in output and "Traceback" not in output, output[-2000:]
    assert not out.exists()


def test_presets_apply_before_the_other_overrides():
    presets = {"paper": {}, "cpu": {"seq_len": 1024, "lr": 1e-4}}
    settings = lambda: {"preset": "paper", "seq_len": 4096, "lr": 5e-5, "__file__": ""}
    assert configure(settings(), [], show=False, presets=presets)["seq_len"] == 4096
    chosen = configure(settings(), ["--lr=3e-4", "--preset=cpu"], show=False, presets=presets)
    assert (chosen["preset"], chosen["seq_len"], chosen["lr"]) == ("cpu", 1024, 3e-4)  # --lr wins, in any order
    with pytest.raises(SystemExit, match="unknown --preset=gpu; known: paper, cpu"):
        configure(settings(), ["--preset=gpu"], show=False, presets=presets)
