"""Benchmark: the trainer's fast path against the plain fp32 one, and packed sequences against
per-sample dynamic padding (the HF Trainer default); same model, same samples and same real tokens
per step, all measured side by side in one run (trained tokens/s, optimizer step included):

- fp32:   fp32 weights, a dense block-diagonal T x T mask, logits at every position, for-each AdamW
          (the trainer before issue 10; --precision=fp32 --attn_implementation=sdpa)
- fast:   bf16 compute with fp32 master weights and AdamW state, per-sample causal attention
          (segment_sdpa on CPU), LM head + loss only where a token is trained, fused AdamW, on a
          CPU in bf16 the decoder layers compiled (04_train.py's defaults; the compiling falls in
          the warm-up steps)
- padded: the fast precision, samples right-padded per micro-batch, sdpa with its padding mask and
          logits everywhere, as the HF Trainer does
- trl:    (--trl=True; pip install -e .[bench]) TRL's SFTTrainer on the same rows: its BFD packer,
          padding-free collator, fused LM head on trained positions and the HF Trainer loop; fp32
          weights under bf16 autocast (the HF Trainer's bf16=True), sdpa (on CPU, without
          flash-attn, transformers masks the packed samples apart from position_ids: a dense mask;
          --trl_attention=segment_sdpa plugs ours in instead)

    python bench/train_throughput.py                     # CPU, SmolLM2-135M, seq_len 2048
    python bench/train_throughput.py --seq_len=4096 --rows=8 --model=/path/to/1b   # on a GPU

MFU is the model's useful FLOPs (6 x non-embedding params x tokens, 6 x LM head x trained tokens,
causal attention 6 x layers x hidden x sum of squared sample lengths) per second over the bf16 GEMM
peak measured here first. The data is a realistic length mix: general chat (Alpaca: short; Glaive
tool calls: multi-turn) and agent trajectories (expert episodes of the db and alfworld environments,
collected in-process if data/raw has none). The last line is JSON: fp32_tokens_per_s,
fast_tokens_per_s, fast_speedup, padded_tokens_per_s, packed_vs_padded, mfu, peak_gflops, ...
(and trl_tokens_per_s, fast_vs_trl with --trl=True)
"""
import json
import os
import random
import sys
import time

from agentune.malloc import use_tcmalloc
use_tcmalloc()  # like 04_train.py (AGENTUNE_MALLOC=system: glibc's malloc)

import torch  # noqa: E402
import torch.nn.functional as F

from agentune.attention import SEGMENT_SDPA, choose_implementation, packed_forward_kwargs, token_losses
from agentune.chat import encode
from agentune.config import configure
from agentune.model import compile_decoder_layers, load_model, load_tokenizer, native_bf16, wants_compiled_layers
from agentune.packing import collate, epoch_rows
from agentune.paths import data_path
from agentune.records import read_jsonl, read_records, to_messages

# -----------------------------------------------------------------------------
model = ""                  # '' = SmolLM2-135M-Instruct
seq_len = 2048
rows = 2                    # packed rows per step (the padded run trains the same samples)
micro_rows = 1              # packed rows per forward; the padded run uses as many micro-batches
steps = 2                   # timed steps per mode
warmup = 2                  # untimed steps before them (a process's first steps run slow: allocator,
                            # oneDNN's primitives for new shapes, the compiling)
threads = 0                 # torch CPU threads; 0 = torch's default
clock = "wall"              # wall | cpu: this process's CPU time, steadier on a shared machine (with --threads=1)
agent_share = 0.5           # share of agent trajectories among the samples
agent_data = "data/raw/*.jsonl"
seed = 0
trl = False                 # also time TRL's SFTTrainer on the same rows (needs: pip install -e .[bench])
trl_attention = "sdpa"      # TRL's attention: sdpa (what it gets without flash-attn: a dense mask made from the
                            # packed position_ids), or segment_sdpa (ours, fed TRL's cu_seq_lens) to tell the
                            # attention apart from the rest
trl_checkpointing = False   # TRL's SFTConfig recomputes activations by default (gradient_checkpointing=True), ~1/3
                            # more compute; our trainer keeps them, so the fair comparison turns it off
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


def step_packed(net, batch_rows, samples, device, attention, fast):
    tokens = 0
    for r in range(0, len(batch_rows), micro_rows):
        batch = collate([samples[i] for row in batch_rows[r:r + micro_rows] for i in row], 0)
        if fast:  # the trainer's loss: LM head only where a token is trained
            loss, n = token_losses(net, batch, device, attention)
        else:     # logits at every position
            logits = net(**packed_forward_kwargs(batch, attention, device)).logits
            labels = batch["labels"][0, 1:].to(device)
            loss = F.cross_entropy(logits[0, :-1].float(), labels, ignore_index=-100, reduction="sum")
            n = int((labels != -100).sum())
        loss.backward()
        tokens += n
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


class MasterAdamW:
    """AdamW on fp32 master copies of a bf16 model's weights, written back after each step (what
    DeepSpeed's bf16 mode does); on an fp32 model the master copies are the weights themselves.
    fused: PyTorch's fused kernel (04_train.py's on CPU now, the HF Trainer's default), else the
    for-each one (the trainer before)."""

    def __init__(self, net, lr, fused):
        self.params = list(net.parameters())
        self.master = [p if p.dtype == torch.float32 else p.detach().float().requires_grad_() for p in self.params]
        self.optimizer = torch.optim.AdamW(self.master, lr=lr, fused=fused)

    def step(self):
        for p, m in zip(self.params, self.master):
            if m is not p:
                m.grad = p.grad.float()
        self.optimizer.step()
        with torch.no_grad():
            for p, m in zip(self.params, self.master):
                if m is not p:
                    p.copy_(m)
                p.grad = None
        self.optimizer.zero_grad(set_to_none=True)


def run_trl(samples, steps_rows, tokenizer, device, bf16):
    """TRL's SFTTrainer on our rows: trained tokens of the timed steps and their seconds, or None
    when trl is not installed.

    SmolLM2's chat template has no {% generation %} markers, so TRL gets pre-tokenized samples with
    labels from our own mask (agentune.chat.encode) rather than assistant_only_loss: the trained
    tokens are the same. TRL's BFD packer (the one SFTTrainer runs with packing=True) packs the
    samples of each of our rows into one row, and a sequential sampler feeds them in our order, so
    every step trains exactly the samples our step does; SFTTrainer then only collates them
    padding-free. Activations are kept, as ours are, unless --trl_checkpointing=True (TRL's own
    default). Timed from the end of the warm-up steps to the end of the last one (batch fetching and
    collating included, as in our loop), fused AdamW (the HF Trainer's default), no clipping, like MasterAdamW."""
    try:
        from datasets import Dataset, concatenate_datasets
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer, pack_dataset
    except ImportError:
        print("trl: skipped, trl is not installed (pip install -e .[bench])", flush=True)
        return None
    import tempfile

    def labels(ids, mask):
        return [t if m else -100 for t, m in zip(ids, mask)]

    all_rows = [row for batch_rows in steps_rows for row in batch_rows]
    dataset = concatenate_datasets([pack_dataset(Dataset.from_dict({
        "input_ids": [samples[i][0] for i in row], "labels": [labels(*samples[i]) for i in row]}), seq_len, "bfd")
        for row in all_rows])
    if len(dataset) != len(all_rows):  # the samples of a row always fit one BFD bin of seq_len
        sys.exit(f"trl: TRL's BFD made {len(dataset)} rows of our {len(all_rows)}")

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(now())

    class CountingSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            # per micro-batch: the positions whose next token is trained, counted as ours counts them
            self.trained.append(int((inputs["labels"][:, 1:] != -100).sum()))
            return super().compute_loss(model, inputs, *args, **kwargs)

    net = load_model(model, dtype=torch.float32, device=device).train()
    net.config._attn_implementation = choose_implementation(trl_attention)
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out, max_steps=len(steps_rows), per_device_train_batch_size=micro_rows,
            gradient_accumulation_steps=rows // micro_rows, learning_rate=1e-5, lr_scheduler_type="constant",
            optim="adamw_torch_fused", max_grad_norm=0.0, bf16=bf16, use_cpu=device.type == "cpu",
            gradient_checkpointing=trl_checkpointing,
            packing=True, packing_strategy="bfd", padding_free=True, max_length=seq_len,
            dataset_kwargs={"skip_prepare_dataset": True}, train_sampling_strategy="sequential",
            logging_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True, seed=seed)
        step_clock = StepClock()
        trainer = CountingSFTTrainer(model=net, args=config, train_dataset=dataset, processing_class=tokenizer,
                                     callbacks=[step_clock])
        trainer.trained = []
        trainer.train()
    per_step = rows // micro_rows
    trained = sum(trainer.trained[warmup * per_step:])  # after the warm-up steps
    expected = sum(sum(samples[i][1][1:]) for batch_rows in steps_rows[warmup:] for row in batch_rows for i in row)
    if trained != expected:
        print(f"trl: warning: trained {trained:,} tokens in the timed steps, ours {expected:,}")
    return trained, step_clock.marks[-1] - step_clock.marks[warmup - 1]


def gemm_peak(net, device, dtype, repeats=10):
    """The best GFLOP/s of dtype matrix products in the model's own shapes, measured here."""
    cfg = net.config
    shapes = [(seq_len, cfg.hidden_size, cfg.intermediate_size), (seq_len, cfg.intermediate_size, cfg.hidden_size),
              (2048, 2048, 2048)]
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
        for _ in range(2):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = now()
        for _ in range(repeats):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * m * k * n * repeats / (now() - t0) / 1e9)
    return best


def useful_flops(net, lengths, trained):
    """Training FLOPs of the work a step needs: the body on every token, the LM head on the
    trained ones, causal attention inside each sample (forward + backward = 3 x forward)."""
    cfg = net.config
    head = net.get_output_embeddings().weight
    embed = net.get_input_embeddings().weight
    body = sum(p.numel() for p in net.parameters()) - embed.numel() - (0 if head is embed else head.numel())
    return (6 * body * sum(lengths) + 6 * head.numel() * trained
            + 6 * cfg.num_hidden_layers * cfg.hidden_size * sum(n * n for n in lengths))


def now():
    return time.process_time() if clock == "cpu" else time.time()


def main():
    if warmup < 1 or steps < 1:
        sys.exit(f"config error: --warmup={warmup}, --steps={steps}: at least 1 each")
    if clock not in ("wall", "cpu"):
        sys.exit(f"config error: --clock={clock}; known: wall, cpu")
    if trl and trl_attention not in ("sdpa", SEGMENT_SDPA):
        sys.exit(f"config error: --trl_attention={trl_attention}; known: sdpa, {SEGMENT_SDPA}")
    if trl and rows % micro_rows:  # TRL accumulates whole micro-batches of micro_rows rows
        sys.exit(f"config error: --trl needs --rows ({rows}) to be a multiple of --micro_rows ({micro_rows})")
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model)
    attention = choose_implementation()
    fast_dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    nets = {torch.float32: load_model(model, dtype=torch.float32, device=device).train()}
    nets[fast_dtype] = nets.get(fast_dtype) or load_model(model, dtype=fast_dtype, device=device).train()
    peak = gemm_peak(nets[fast_dtype], device, fast_dtype)
    samples = load_mix(tokenizer)
    plan = epoch_rows([len(ids) for ids, _ in samples], seq_len, seed, 0)
    need = (warmup + steps) * rows
    if len(plan) < need:
        sys.exit(f"only {len(plan)} packed rows; lower --steps or --rows")
    # timed: the rows after the first `rows` (the same data whatever the warm-up); warm-up: the first
    # rows, then rows from after the timed ones
    blocks = [0] + list(range(steps + 1, steps + warmup)) + list(range(1, steps + 1))
    steps_rows = [plan[b * rows:(b + 1) * rows] for b in blocks]
    print(f"{len(samples)} samples, {sum(len(i) for i, _ in samples):,} tokens; "
          f"{steps} timed steps of {rows} rows x {seq_len} tokens on {device}; fast path: {fast_dtype}, "
          f"{attention}; {str(fast_dtype)[6:]} GEMM peak {peak:,.0f} GFLOP/s; "
          f"{torch.get_num_threads()} threads, {clock} clock")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = {}
    # mode: (weights dtype, attention, packed)
    modes = {"fp32": (torch.float32, "sdpa", True), "fast": (fast_dtype, attention, True),
             "padded": (fast_dtype, "sdpa", False)}
    fast_net = nets[fast_dtype]
    if wants_compiled_layers("auto", fast_dtype, device):  # as 04_train.py's default does
        fast_net = load_model(model, dtype=fast_dtype, device=device).train()
        compile_decoder_layers(fast_net)
    for mode, (dtype, attn, packed) in modes.items():
        net = fast_net if mode == "fast" else nets[dtype]
        # the padded run uses sdpa with its padding mask, the HF default
        net.config._attn_implementation = attn
        optimizer = MasterAdamW(net, lr=1e-5, fused=mode != "fp32")
        trained, real, slots, flops, elapsed = 0, 0, 0, 0.0, 0.0
        for s, batch_rows in enumerate(steps_rows):
            batch_samples = [samples[i] for row in batch_rows for i in row]
            # the HF Trainer's random sampler: a step's samples arrive in random order, not grouped
            # the way our packer grouped them into rows
            random.Random(seed + blocks[s]).shuffle(batch_samples)  # the same order whatever the warm-up
            sync()
            t0 = now()
            if packed:
                n = step_packed(net, batch_rows, samples, device, attn, fast=mode == "fast")
                used = len(batch_rows) * seq_len
            else:
                n, used = step_padded(net, batch_samples, len(batch_rows) // micro_rows,
                                      tokenizer.pad_token_id or 0, device)
            optimizer.step()
            sync()
            if s < warmup:
                continue
            elapsed += now() - t0
            trained += n
            real += sum(len(ids) for ids, _ in batch_samples)
            slots += used
            flops += useful_flops(net, [len(ids) for ids, _ in batch_samples], n)
        results[mode] = {"tokens_per_s": trained / elapsed, "efficiency": real / slots,
                         "mfu": flops / elapsed / (peak * 1e9)}
        print(f"{mode}: {trained / elapsed:,.0f} trained tokens/s, efficiency {real / slots:.3f}, "
              f"{elapsed:.1f} s, mfu {results[mode]['mfu']:.3f}", flush=True)
    extra = {}
    if trl:
        # room for TRL's own fp32 model and AdamW state: drop the last mode's optimizer and the fp32 model
        del optimizer, net, fast_net
        nets = {fast_dtype: nets[fast_dtype]}
        timed = run_trl(samples, steps_rows, tokenizer, device, bf16=fast_dtype == torch.bfloat16)
        if timed:
            n, elapsed = timed
            timed_samples = [samples[i] for batch_rows in steps_rows[warmup:] for row in batch_rows for i in row]
            lengths = [len(ids) for ids, _ in timed_samples]
            trl_mfu = useful_flops(nets[fast_dtype], lengths, n) / elapsed / (peak * 1e9)
            extra = {"trl_tokens_per_s": round(n / elapsed, 1),
                     "fast_vs_trl": round(results["fast"]["tokens_per_s"] / (n / elapsed), 3),
                     "trl_mfu": round(trl_mfu, 4), "trl_attention": trl_attention,
                     "trl_checkpointing": trl_checkpointing}
            efficiency = sum(lengths) / (steps * rows * seq_len)
            print(f"trl: {n / elapsed:,.0f} trained tokens/s, efficiency {efficiency:.3f}, {elapsed:.1f} s, "
                  f"mfu {trl_mfu:.3f}", flush=True)
    fp32, fast, padded = (results[m]["tokens_per_s"] for m in ("fp32", "fast", "padded"))
    print(json.dumps({
        "fp32_tokens_per_s": round(fp32, 1), "fast_tokens_per_s": round(fast, 1),
        "fast_speedup": round(fast / fp32, 3), "padded_tokens_per_s": round(padded, 1),
        "packed_vs_padded": round(fast / padded, 3), "mfu": round(results["fast"]["mfu"], 4),
        "fp32_mfu": round(results["fp32"]["mfu"], 4), "peak_gflops": round(peak, 1),
        "packing_efficiency": round(results["fast"]["efficiency"], 4),
        "padded_efficiency": round(results["padded"]["efficiency"], 4), "seq_len": seq_len,
        "fast_dtype": str(fast_dtype)[6:], "attention": attention,
        "threads": torch.get_num_threads(), "clock": clock, **extra}))


if __name__ == "__main__":
    main()
