"""Stage 04 on 2 ranks (CPU, gloo) through the real `deepspeed` launcher, ZeRO-2 and ZeRO-3: with an
odd number of validation rows it finishes, and every logged loss equals the 1-rank run of the
same global batch. Each launch has a timeout, so a rank deadlock fails the test instead of hanging."""
import json
import os
import signal
import subprocess

import pytest

from agentune.chat import encode
from agentune.packing import epoch_rows, rank_micro_batches
from agentune.records import to_messages
from agentune.testing import PYTHON, REPO
from test_train import metrics, train_records, write_records

SEQ_LEN = 256
LAUNCH_TIMEOUT_S = 240  # a launch takes 25 s of CPU (70 s on a busy 2-core box); a deadlocked one never ends


def launch(tmp, model_dir, out, ranks, ds_config, port):
    deepspeed = os.path.join(os.path.dirname(PYTHON), "deepspeed")
    cmd = [deepspeed, f"--num_gpus={ranks}", f"--master_port={port}", os.path.join(REPO, "04_train.py"),
           f"--model={model_dir}", f"--data={tmp}/train.jsonl", f"--val_data={tmp}/val.jsonl",
           f"--seq_len={SEQ_LEN}", "--batch_size=4", "--micro_batch_size=1", "--max_steps=3",
           "--eval_interval=2", "--lr=1e-3", "--warmup_ratio=0.5", "--save_interval=0", "--precision=fp32",
           f"--ds_config={os.path.join(REPO, ds_config)}", f"--out_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    # a session of its own, so that a timeout kills the launcher and the ranks it started
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{ranks} ranks, {ds_config}: no end after {LAUNCH_TIMEOUT_S} s (ranks out of step?)")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-5000:]
    return metrics(out)


@pytest.fixture(scope="module")
def rank_dir(tmp_path_factory, base_tokenizer):
    tmp = tmp_path_factory.mktemp("ranks")
    write_records(tmp / "train.jsonl", train_records(40))
    # validation: 3 samples too long to share a row, so 3 packed rows (odd) for 2 ranks
    val = [r for r in train_records(200, seed=2)
           if SEQ_LEN // 2 + 10 < len(encode(base_tokenizer, to_messages(r, "val"))[0]) <= SEQ_LEN][:3]
    write_records(tmp / "val.jsonl", val)
    lengths = [len(encode(base_tokenizer, to_messages(r, "val"))[0]) for r in val]
    assert len(epoch_rows(lengths, SEQ_LEN, 1234, 0)) == 3
    return tmp


def test_rank_micro_batches_are_balanced():
    for n_rows in range(0, 12):
        for world in (1, 2, 3, 4):
            for micro in (1, 2, 3):
                rows = [[i] for i in range(n_rows)]
                parts = [rank_micro_batches(rows, r, world, micro) for r in range(world)]
                assert len({len(p) for p in parts}) == 1, (n_rows, world, micro)
                flat = [row for p in parts for batch in p for row in batch]
                assert flat == rows  # every row once, in order
                assert all(len(batch) <= micro for p in parts for batch in p)


def test_two_ranks_match_one_rank(rank_dir, tiny_model_dir):
    one = launch(rank_dir, tiny_model_dir, rank_dir / "r1", 1, "ds_config.json", 29541)
    train_steps = [m for m in one if "loss" in m]
    assert [m["step"] for m in train_steps] == [1, 2, 3]
    # the logged lr is the one the step used: warmup over 2 steps, then the cosine from lr
    assert [round(m["lr"] / 1e-3, 6) for m in train_steps] == [0.5, 1.0, 1.0]
    assert [m["step"] for m in one if "val_loss" in m] == [0, 2]
    diffs = {}
    for ds_config, port in (("ds_config.json", 29542), ("ds_config_zero3.json", 29543)):
        two = launch(rank_dir, tiny_model_dir, rank_dir / f"r2_{ds_config}", 2, ds_config, port)
        assert [m["step"] for m in two] == [m["step"] for m in one]
        diff = 0.0
        for a, b in zip(one, two):
            for key in ("loss", "val_loss"):
                if key in a:
                    diff = max(diff, abs(a[key] - b[key]))
            for key in ("trained_tokens", "val_tokens"):
                assert a.get(key) == b.get(key)
        diffs[ds_config] = diff
    print("max |loss diff| 1 rank vs 2 ranks:", json.dumps(diffs))
    assert all(d < 1e-5 for d in diffs.values()), diffs


ACCUMULATION_CHECK = r'''
import copy, json, os, sys
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3])
import torch, deepspeed
from transformers import AutoModelForCausalLM
deepspeed.init_distributed()
G, T = 16, 64
torch.manual_seed(0)
batches = [torch.randint(0, 1000, (1, T)) for _ in range(G)]

def loss(net, ids):  # this micro-batch's share of the step's mean token loss, as 04_train.py scales it
    logits = net(input_ids=ids, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="sum") / (G * T)

base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
ref = 0
for ids in batches:  # each micro-batch's bf16 gradient, summed in float64
    base.zero_grad()
    loss(base, ids).backward()
    ref = ref + torch.cat([p.grad.double().flatten() for p in base.parameters()])
result = {}
for accum in ("shipped", "bf16"):
    ds = json.load(open(sys.argv[2]))
    if accum == "bf16":
        ds["data_types"] = {"grad_accum_dtype": "bf16"}
    ds.update(train_batch_size=G, train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=G,
              bf16={"enabled": True}, steps_per_print=10**9)
    net = copy.deepcopy(base)
    engine, *_ = deepspeed.initialize(model=net, optimizer=torch.optim.AdamW(net.parameters(), lr=0.0), config=ds)
    for i, ids in enumerate(batches):
        engine.backward(loss(engine, ids), scale_wrt_gas=False)
        if i < G - 1:
            engine.step()  # the last backward is the boundary: gradients stay unapplied to read
    opt = engine.optimizer
    if engine.zero_optimization_stage() == 3:  # one rank: a parameter's partition is all of it
        parts = opt._DeepSpeedZeroOptimizer_Stage3__param_id_to_grad_partition
        got = torch.cat([parts[p.ds_id][:p.ds_numel].double() for p in net.parameters()])
    else:
        got = torch.cat([g.double().flatten() for g in opt.averaged_gradients[0]])
    result[accum] = {"dtype": str(opt.gradient_accumulation_dtype),
                     "rel_err": ((got - ref).norm() / ref.norm()).item()}
print("RESULT", json.dumps(result))
'''


@pytest.mark.parametrize("ds_config,port", [("ds_config.json", 29544), ("ds_config_zero3.json", 29545)])
def test_shipped_configs_accumulate_bf16_gradients_in_fp32(tiny_model_dir, ds_config, port):
    """With bf16 weights, the shipped configs make DeepSpeed sum the micro-batch gradients in fp32
    (bf16 sums lose ~1e-2 of the gradient over 16 micro-batches; the presets use up to 64)."""
    proc = subprocess.run([PYTHON, "-c", ACCUMULATION_CHECK, tiny_model_dir, os.path.join(REPO, ds_config), str(port)],
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(ds_config, result)
    assert result["shipped"]["dtype"] == "torch.float32" and result["shipped"]["rel_err"] < 1e-6, result
    assert result["bf16"]["dtype"] == "torch.bfloat16" and result["bf16"]["rel_err"] > 1e-4, result
