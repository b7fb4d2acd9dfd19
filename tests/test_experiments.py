"""The reproduction study's measuring tools: the held-out loss and the results writer."""
import json
import os
import subprocess

import torch

from conftest import PYTHON, REPO


def run(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([PYTHON, os.path.join(REPO, "experiments", script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_heldout_loss_is_the_mean_over_trained_tokens(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from agentune.chat import encode
    from agentune.records import to_messages
    agent = [{"messages": [{"role": "system", "content": "You are an agent."},
                           {"role": "user", "content": f"List the files in /tmp/{i}."},
                           {"role": "assistant", "content": f"Act: bash\n```bash\nls /tmp/{i}\n```"},
                           {"role": "user", "content": "a.txt b.txt"},
                           {"role": "assistant", "content": "Act: answer(a.txt b.txt)"}]} for i in range(3)]
    general = [{"instruction": "Say hello.", "input": "", "output": "Hello!"},
               {"instruction": "word " * 400, "input": "", "output": "too long for seq_len"}]
    write_jsonl(tmp_path / "agent.jsonl", agent)
    write_jsonl(tmp_path / "general.jsonl", general)
    out = tmp_path / "loss.json"
    run("heldout_loss.py", f"--model={tiny_model_dir}", f"--out={out}", "--seq_len=256",
        f"--data=agent={tmp_path}/agent.jsonl,general={tmp_path}/general.jsonl")
    result = json.loads(out.read_text())["loss"]
    assert result["general"]["conversations"] == 1 and result["general"]["too_long_skipped"] == 1

    # independently: Hugging Face's own loss with every untrained token labelled -100, per record,
    # weighted by trained tokens (the file's loss is a mean over tokens, not over records)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    total = tokens = 0
    for i, record in enumerate(agent):
        ids, mask = encode(tokenizer, to_messages(record, f"agent:{i + 1}"))
        labels = torch.tensor([t if m else -100 for t, m in zip(ids, mask)])
        labels[0] = -100
        n = int((labels[1:] != -100).sum())
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels[None]).loss.item()
        total, tokens = total + loss * n, tokens + n
    assert result["agent"]["tokens"] == tokens
    assert abs(result["agent"]["loss"] - total / tokens) < 1e-3


def test_results_verdicts_follow_the_numbers(tmp_path):
    study = tmp_path / "study"
    (study / "loss").mkdir(parents=True)

    def losses(held_in, held_out, general):
        sets = {"os": held_in, "db": held_in, "alfworld": held_in, "sciworld": held_out,
                "miniwob": held_out, "gsm8k": general, "general": general}
        return {"loss": {k: {"loss": v, "tokens": 100, "conversations": 8, "too_long_skipped": 0}
                         for k, v in sets.items()}}
    # agent data helps held-in and held-out, and costs general loss as eta grows
    figures = {"base": (1.0, 1.0, 1.0), "eta0.0": (0.98, 1.02, 0.90), "eta0.2": (0.80, 0.95, 0.91),
               "eta0.5": (0.70, 0.96, 0.95), "eta1.0": (0.60, 0.97, 1.10),
               "teacher_filtered": (0.95, 1.0, 0.9), "teacher_unfiltered": (0.85, 1.0, 0.9)}
    for run_name, (a, b, c) in figures.items():
        (study / "loss" / f"{run_name}.json").write_text(json.dumps(losses(a, b, c)))
    out = tmp_path / "RESULTS.md"
    run("write_results.py", f"--study={study}", f"--out={out}", "--command=test")
    text = out.read_text()
    claims = text.split("## The paper's claims on these numbers")[1]
    first, second, third = [line for line in claims.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert first.count("**reproduced**") == 2
    assert "**reproduced**" in second and "**not reproduced**" not in second
    assert "held-in loss 0.980 → 0.800 → 0.700 → 0.600" in second
    assert "**not reproduced**" in third          # filtered was worse here

    # a difference smaller than the noise floor is neither claimed nor denied
    figures["eta0.2"] = (0.80, 1.00, 0.91)
    (study / "loss" / "eta0.2.json").write_text(json.dumps(losses(*figures["eta0.2"])))
    run("write_results.py", f"--study={study}", f"--out={out}", "--command=test")
    first = [line for line in out.read_text().splitlines() if line.startswith("1.")][0]
    assert "held-in loss -0.200 vs base and -0.180 vs eta = 0 — **reproduced**" in first
    assert "held-out loss +0.000 vs base and -0.020 vs eta = 0 — **within noise**" in first
    assert "| eta0.2 | 0.800 | 0.800 | 0.800 | 0.950 | 0.950 | 0.910 | 0.910 |" in text
