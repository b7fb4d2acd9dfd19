"""Benchmark: packed sequences vs per-sample dynamic padding (the HF Trainer default), same model,
same samples and same real tokens per step, measured side by side in one run.

    python bench/train_throughput.py                     # CPU, SmolLM2-135M, seq_len 1024
    python bench/train_throughput.py --seq_len=4096 --rows=8 --model=/path/to/1b   # on a GPU

The data is a realistic length mix: general chat (Alpaca: short; Glaive tool calls: multi-turn)
and agent trajectories (expert episodes of the db and alfworld environments, collected in-process
if data/raw has none). The last line is JSON: packing_efficiency, padded_efficiency,
tokens_per_s_packed, tokens_per_s_padded, speedup.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from agentune.chat import encode  # noqa: E402
from agentune.config import configure  # noqa: E402
from agentune.model import load_model, load_tokenizer  # noqa: E402
from agentune.attention import choose_implementation, packed_forward_kwargs  # noqa: E402
from agentune.packing import collate, epoch_rows  # noqa: E402
from agentune.paths import data_path  # noqa: E402
from agentune.records import read_jsonl, read_records, to_messages  # noqa: E402

# -----------------------------------------------------------------------------
model = ""                  # '' = SmolLM2-135M-Instruct
seq_len = 1024
rows = 4                    # packed rows per step (the padded run trains the same samples)
micro_rows = 1              # packed rows per forward; the padded run uses as many micro-batches
steps = 3                   # timed steps per mode (after one warm-up step each)
agent_share = 0.5           # share of agent trajectories among the samples
agent_data = "data/raw/*.jsonl"
seed = 0
# -----------------------------------------------------------------------------
configure(globals())


def agent_episodes():
    """Expert episodes: from data/raw if collected, else a quick in-process db + alfworld run."""
    import glob
    if glob.glob(agent_data):
        return [r for _, r in read_records(agent_data) if r.get("success")]
    from agentune.agents import make_agent
    from agentune.envs import env_class
    from agentune.rollout import run_episodes
    out = "/tmp/agentune_bench_raw"
    for name, split, n in (("db", None, 60), ("alfworld", "train", 12)):
        tasks = env_class(name).load_tasks(None, split)[:n]
        run_episodes(name, tasks, make_agent("expert"), f"{out}/{name}.jsonl", workers=2)
    return [r for _, r in read_records(f"{out}/*.jsonl") if r.get("success")]


def load_mix(tokenizer):
    general = [r for _, r in read_jsonl(data_path("general", "alpaca_en_demo.json"))]
    general += [r for _, r in read_jsonl(data_path("general", "glaive_toolcall_en_demo.json"))]
    agent = agent_episodes()
    rng = random.Random(seed)
    n_agent = int(len(general) * agent_share / (1 - agent_share))
    agent = [rng.choice(agent) for _ in range(n_agent)] if agent else []
    samples = []
    for i, record in enumerate(general + agent):
        record = {"messages": record["messages"]} if "messages" in record else record
        ids, mask = encode(tokenizer, to_messages(record, f"mix[{i}]"))
        if len(ids) <= seq_len:
            samples.append((ids, [False] + mask[1:]))
    rng.shuffle(samples)
    return samples


def step_packed(net, batch_rows, samples, device):
    tokens = 0
    for r in range(0, len(batch_rows), micro_rows):
        batch = collate([samples[i] for row in batch_rows[r:r + micro_rows] for i in row], 0)
        logits = net(**packed_forward_kwargs(batch, ATTENTION, device)).logits
        labels = batch["labels"][0, 1:].to(device)
        loss = F.cross_entropy(logits[0, :-1].float(), labels, ignore_index=-100, reduction="sum")
        loss.backward()
        tokens += int((labels != -100).sum())
    return tokens


def step_padded(net, batch_samples, n_micro, pad_id, device):
    """HF Trainer default: random samples, each micro-batch right-padded to its longest sample."""
    tokens, slots = 0, 0
    per = max(1, -(-len(batch_samples) // n_micro))
    for m in range(0, len(batch_samples), per):
        chunk = batch_samples[m:m + per]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id)
        labels = torch.full((len(chunk), width), -100)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (sample_ids, mask) in enumerate(chunk):
            ids[j, :len(sample_ids)] = torch.tensor(sample_ids)
            labels[j, :len(sample_ids)] = torch.tensor([t if k else -100 for t, k in zip(sample_ids, mask)])
            attn[j, :len(sample_ids)] = 1
        ids, labels, attn = ids.to(device), labels.to(device), attn.to(device)
        logits = net(input_ids=ids, attention_mask=attn, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(),
                               ignore_index=-100, reduction="sum")
        loss.backward()
        tokens += int((labels[:, 1:] != -100).sum())
        slots += len(chunk) * width
    return tokens, slots


def main():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model)
    global ATTENTION
    ATTENTION = choose_implementation()
    net = load_model(model, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32, device=device)
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)
    samples = load_mix(tokenizer)
    plan = epoch_rows([len(ids) for ids, _ in samples], seq_len, seed, 0)
    need = (steps + 1) * rows
    if len(plan) < need:
        sys.exit(f"only {len(plan)} packed rows; lower --steps or --rows")
    steps_rows = [plan[s * rows:(s + 1) * rows] for s in range(steps + 1)]
    print(f"{len(samples)} samples, {sum(len(i) for i, _ in samples):,} tokens; "
          f"{steps} timed steps of {rows} rows x {seq_len} tokens on {device}; packed attention: {ATTENTION}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = {}
    for mode in ("packed", "padded"):
        # the padded run uses sdpa with its padding mask, the HF default; only packing needs varlen
        net.config._attn_implementation = ATTENTION if mode == "packed" else "sdpa"
        trained, real, slots, elapsed = 0, 0, 0, 0.0
        for s, batch_rows in enumerate(steps_rows):
            batch_samples = [samples[i] for row in batch_rows for i in row]
            # the HF Trainer's random sampler: a step's samples arrive in random order, not grouped
            # the way our packer grouped them into rows
            random.Random(seed + s).shuffle(batch_samples)
            sync()
            t0 = time.time()
            if mode == "packed":
                n = step_packed(net, batch_rows, samples, device)
                used = len(batch_rows) * seq_len
            else:
                n, used = step_padded(net, batch_samples, len(batch_rows) // micro_rows,
                                      tokenizer.pad_token_id or 0, device)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if s == 0:
                continue  # warm-up
            elapsed += time.time() - t0
            trained += n
            real += sum(len(ids) for ids, _ in batch_samples)
            slots += used
        results[mode] = {"tokens_per_s": trained / elapsed, "efficiency": real / slots, "seconds": elapsed}
        print(f"{mode}: {trained / elapsed:,.0f} trained tokens/s, efficiency {real / slots:.3f}, {elapsed:.1f} s")
    print(json.dumps({
        "packing_efficiency": round(results["packed"]["efficiency"], 4),
        "padded_efficiency": round(results["padded"]["efficiency"], 4),
        "tokens_per_s_packed": round(results["packed"]["tokens_per_s"], 1),
        "tokens_per_s_padded": round(results["padded"]["tokens_per_s"], 1),
        "speedup": round(results["packed"]["tokens_per_s"] / results["padded"]["tokens_per_s"], 3)}))


if __name__ == "__main__":
    main()
