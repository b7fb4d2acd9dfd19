"""Stage 04: supervised fine-tuning on packed sequences, loss on the assistant turns only.

Samples are packed best-fit-decreasing into rows of seq_len tokens; position ids restart per
sample and attention never crosses a sample (a varlen flash kernel on GPU: flash-attn, or PyTorch's
own; on CPU one causal SDPA call per sample, see agentune/attention.py). The loss is the mean over
every trained token of the global batch (all micro-batches, accumulation steps and ranks), not a
mean of per-batch means; the LM head runs only where a token is trained. Compute is bf16 where the
hardware has it (GPU, or a CPU with AVX512-BF16/AMX) over fp32 master weights and optimizer state;
--precision=fp32 for exact fp32. On a CPU the script re-runs itself on tcmalloc (agentune/malloc.py)
and, in bf16, compiles its decoder layers (--compile_layers).

    python 04_train.py --preset=cpu                      # one process, still through DeepSpeed
    deepspeed --num_gpus=8 04_train.py --data=data/mix/train.jsonl
    sbatch slurm/train_multinode.sbatch                  # many nodes

Writes to out_dir (default out/train): metrics.jsonl (loss, lr, throughput and val_loss by step),
loss.png, checkpoint-<step>/ (Hugging Face models; final links to the last), deepspeed/ (the states
--resume continues from), ds_config.resolved.json and config.json (the resolved settings).
"""
import hashlib
import json
import math
import os
import random
import shutil
import socket
import sys
import time

from agentune.malloc import use_tcmalloc
use_tcmalloc()  # before torch: re-runs this script on tcmalloc (CPU training 1.2-1.5x faster)

import torch  # noqa: E402
import torch.distributed as dist
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from agentune.attention import choose_implementation, token_losses
from agentune.chat import encode
from agentune.config import check, configure, save_config
from agentune.model import compile_decoder_layers, load_tokenizer, native_bf16, resolve_model, wants_compiled_layers
from agentune.packing import collate, epoch_rows, rank_micro_batches
from agentune.records import (DataError, JsonlWriter, expand_paths, read_jsonl, read_records, to_messages,
                              upstream_report)

# -----------------------------------------------------------------------------
# settings: each one can be overridden as --name=value (--help lists them with these comments)
data = "data/mix/train.jsonl"      # training records (messages or conversations), files or globs
val_data = "data/mix/val.jsonl"    # '' to skip validation
model = ""                         # Hugging Face model dir; '' = SmolLM2-135M-Instruct
out_dir = "out/train"              # metrics, checkpoints, the final model, config.json
resume = False                     # continue from the latest checkpoint in out_dir
preset = "paper"                   # paper | cpu | 7b | 13b | 70b: a block of the settings below (PRESETS),
                                   # applied before the other --name=value overrides
seq_len = 4096                     # tokens per packed row; the seq_len 03_mix.py cut the data to wins
                                   # (mix_report.json next to `data`) unless given as --seq_len
batch_size = 64                    # packed rows per optimizer step, over all ranks
micro_batch_size = 1               # packed rows per forward/backward on one rank
max_steps = 2000                   # optimizer steps (paper: 2k)
lr = 5e-5                          # peak learning rate, after warmup (paper: 5e-5 for 7B/13B)
min_lr_ratio = 0.1                 # cosine decays to lr * min_lr_ratio
warmup_ratio = 0.02                # paper: 2% warmup
weight_decay = 0.0                 # AdamW, on matrices only (norms and biases never decay)
adam_beta1 = 0.9                   # AdamW: decay of the running mean of gradients
adam_beta2 = 0.95                  # AdamW: decay of the running mean of squared gradients
grad_clip = 1.0                    # max global gradient norm (0 = off)
seed = 1234                        # the packing and order of the rows, torch's random state
save_interval = 500                # steps between checkpoints (and one at the end)
keep_checkpoints = 2               # DeepSpeed states kept for resume (HF exports are all kept)
eval_interval = 100                # steps between validations (and one at step 0)
log_interval = 1                   # steps between training records in metrics.jsonl
truncate = False                   # cut samples longer than seq_len instead of dropping them
skip_bad = False                   # count and skip bad records instead of stopping on the first
ds_config = "ds_config.json"       # ds_config_zero3.json for ZeRO-3
gradient_checkpointing = False     # recompute activations in the backward pass: less memory, more compute
precision = "auto"                 # bf16 | fp32 | auto: bf16 where matmuls run it natively (GPU, AVX512-BF16/AMX CPU)
attn_implementation = "auto"       # auto | segment_sdpa (CPU) | torch_varlen | flash_attention_2 | sdpa (dense mask)
compile_layers = "auto"            # auto | on | off: torch.compile each decoder layer (fuses the element-wise work);
                                   # auto = on for bf16 on CPU (~20 s of compiling, then ~1.15x per step on AMX)
peak_tflops = 989.0                # accelerator's dense bf16 peak, for MFU (H100/H200 SXM)

PRESETS = {
    "paper": {},
    # a few minutes on a 2-core CPU with SmolLM2-135M
    "cpu": dict(seq_len=1024, batch_size=4, micro_batch_size=1, max_steps=40, lr=1e-4,
                save_interval=1000, eval_interval=20, warmup_ratio=0.05),
    # AgentTuning's settings for Llama-2 chat models (paper, Sec. 3.1 / App.): 4k context,
    # lr 5e-5 (7B, 13B) and 1e-5 (70B), 2k steps of 64 sequences, ZeRO-3 for the big ones
    "7b": dict(seq_len=4096, batch_size=64, micro_batch_size=1, max_steps=2000, lr=5e-5,
               ds_config="ds_config.json", gradient_checkpointing=True),
    "13b": dict(seq_len=4096, batch_size=64, micro_batch_size=1, max_steps=2000, lr=5e-5,
                ds_config="ds_config_zero3.json", gradient_checkpointing=True),
    "70b": dict(seq_len=4096, batch_size=64, micro_batch_size=1, max_steps=2000, lr=1e-5,
                ds_config="ds_config_zero3.json", gradient_checkpointing=True),
}
# -----------------------------------------------------------------------------
config = configure(globals(), presets=PRESETS)

# -----------------------------------------------------------------------------
# check every setting before anything is written
check(precision in ("auto", "bf16", "fp32"), f"--precision={precision}; known: auto, bf16, fp32")
check(compile_layers in ("auto", "on", "off"), f"--compile_layers={compile_layers}; known: auto, on, off")
attention = choose_implementation(attn_implementation)   # an unknown one fails here
world = int(os.environ.get("WORLD_SIZE", "1"))           # ranks: the launcher's, else one process
check(micro_batch_size >= 1 and batch_size % (micro_batch_size * world) == 0, f"batch_size={batch_size} must be "
      f"a multiple of micro_batch_size ({micro_batch_size}) x ranks ({world})")
check(max_steps >= 0 and seq_len >= 1, f"--max_steps={max_steps}, --seq_len={seq_len}: 0 or more steps, rows of 1 or more tokens")
check(0 <= warmup_ratio <= 1 and 0 <= min_lr_ratio <= 1,
      f"--warmup_ratio={warmup_ratio}, --min_lr_ratio={min_lr_ratio}: shares in [0, 1]")
check(keep_checkpoints >= 1, f"--keep_checkpoints={keep_checkpoints}: at least 1 (the one --resume continues from)")
ds_path = ds_config if os.path.exists(ds_config) else os.path.join(os.path.dirname(os.path.abspath(__file__)), ds_config)
check(os.path.exists(ds_path), f"--ds_config={ds_config}: file not found")
# seq_len and the tokenizer travel with the data: 03_mix.py recorded what it cut the mix to and
# counted it with in mix_report.json next to it. Its seq_len is used unless --seq_len is given
# (then a difference is reported with both numbers); another tokenizer is reported too
first_data = expand_paths(data)[0]                       # a missing data file fails here
mix_report = upstream_report(first_data, "mix_report.json") or {}
mix_len = mix_report.get("seq_len")
if mix_len and not any(a.startswith("--seq_len=") for a in sys.argv[1:]):
    if mix_len != seq_len and int(os.environ.get("RANK", "0")) == 0:
        print(f"seq_len = {mix_len} (from {os.path.join(os.path.dirname(first_data), 'mix_report.json')}; "
              f"the preset said {seq_len})")
    seq_len = config["seq_len"] = mix_len
elif mix_len and mix_len != seq_len:
    print(f"warning: --seq_len={seq_len}, but 03_mix.py kept samples of up to {mix_len} tokens: "
          + ("longer ones are dropped (or cut with --truncate)" if seq_len < mix_len else "rows pack more than the mix was cut for"))
if "model" in mix_report and mix_report["model"] != model:
    print(f"warning: the mix was counted with the tokenizer of {mix_report['model'] or 'the default base model'!r}, "
          f"training uses {model or 'the default base model'!r}: its token counts (eta in tokens, "
          "lengths) may not hold")

# -----------------------------------------------------------------------------
# ranks, device, precision, DeepSpeed's configuration
import deepspeed  # noqa: E402  here, not above: it prints an accelerator line and takes seconds (--help needs neither)


def init_distributed():
    """Single-process defaults so that plain `python 04_train.py` goes through DeepSpeed too."""
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # On the CPU DeepSpeed compiles its all-reduce op (shm) at first use into torch's extension
    # cache, one folder per Python version: installs in different directories compile it with
    # different include paths, so each rebuilt it over the other's (35 s to minutes per run here).
    # One folder per DeepSpeed install keeps each build.
    install = os.path.dirname(os.path.abspath(deepspeed.__file__))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(
        os.path.expanduser("~/.cache/torch_extensions"), "agentune-" + hashlib.sha1(install.encode()).hexdigest()[:10]))
    deepspeed.init_distributed()
    # On the CPU DeepSpeed's all-reduce maps one /dev/shm file per rank and never unlinks it: every
    # run left 69 MB of RAM behind (8 GB here after a day of runs, until trainings were OOM-killed).
    # After the barrier every rank has mapped every file, so each removes its own name; the
    # mappings live on until the process exits.
    dist.barrier()
    shm = "/dev/shm/deepspeed_allreduce_buffer_{}_{}_{}_{}".format(
        os.getuid(), os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"), os.environ["RANK"])
    if os.path.exists(shm):
        os.remove(shm)
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


rank, world, local_rank = init_distributed()
master = rank == 0
cuda = torch.cuda.is_available()
device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(device)
# bf16 compute, fp32 master weights and optimizer state (DeepSpeed's bf16 mode)
bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
grad_accum = batch_size // (micro_batch_size * world)
with open(ds_path) as f:
    ds = json.load(f)
ds.update(train_batch_size=batch_size, train_micro_batch_size_per_gpu=micro_batch_size,
          gradient_accumulation_steps=grad_accum, gradient_clipping=grad_clip,
          bf16={"enabled": bf16}, steps_per_print=10**9)
ds.pop("fp16", None)
if master:
    print(f"ranks {world}, grad accumulation {grad_accum}, device {device}, "
          f"attention {attention if attention != 'sdpa' else 'block-diagonal sdpa'}, "
          f"{'bf16' if bf16 else 'fp32'}, ZeRO stage {ds.get('zero_optimization', {}).get('stage', 0)}")


# -----------------------------------------------------------------------------
# data: tokenized samples, the packed rows of every step, and the resume check
def load_samples(pattern, tokenizer, max_len, log):
    """Tokenized (input_ids, loss_mask) samples of a file; over-long samples dropped (or cut)."""
    samples, stats = [], {"records": 0, "too_long_dropped": 0, "truncated": 0, "bad_skipped": 0}
    for where, record in tqdm(list(read_records(pattern)), desc=f"tokenize {pattern}", disable=not log):
        stats["records"] += 1
        try:
            ids, mask = encode(tokenizer, to_messages(record, where), where)
        except DataError as e:
            if not skip_bad:
                raise
            stats["bad_skipped"] += 1
            print(f"skip: {e}")
            continue
        if len(ids) > max_len:
            if not truncate:
                stats["too_long_dropped"] += 1
                continue
            ids, mask = ids[:max_len], mask[:max_len]
            if not any(mask[1:]):
                stats["too_long_dropped"] += 1
                continue
            stats["truncated"] += 1
        mask = [False] + list(mask[1:])  # a sample's first token has nothing before it to predict it
        samples.append((ids, mask))
    if not samples:
        raise DataError(pattern, "no usable training sample", f"check the file; stats: {stats}")
    return samples, stats


class RowSchedule:
    """The global order of packed rows: epoch after epoch, each packed and shuffled with the seed,
    so that step s always trains the same rows, whether the run was resumed or not."""

    def __init__(self, lengths, capacity, seed):
        self.lengths, self.capacity, self.seed = lengths, capacity, seed
        self.rows = []
        self.epoch_starts = []

    def rows_for_step(self, step, rows_per_step):
        need = (step + 1) * rows_per_step
        while len(self.rows) < need:
            self.epoch_starts.append(len(self.rows))
            self.rows += epoch_rows(self.lengths, self.capacity, self.seed, len(self.epoch_starts) - 1)
        return self.rows[step * rows_per_step: need]

    def epoch_of(self, step, rows_per_step):
        return sum(1 for s in self.epoch_starts if s <= step * rows_per_step) - 1


# the settings (and samples) that fix which rows each step trains; a resume must not change them
DATA_ORDER_SETTINGS = ("data", "seed", "seq_len", "batch_size", "truncate")


def data_order(settings, lengths, trained_per_sample):
    digest = hashlib.sha1(json.dumps([lengths, trained_per_sample]).encode()).hexdigest()
    return {**{k: settings[k] for k in DATA_ORDER_SETTINGS}, "samples": len(lengths), "samples_sha1": digest}


def check_resume(ckpt_dir, current):
    """Refuse with a clear message unless ckpt_dir has a checkpoint made with the same data order."""
    latest = os.path.join(ckpt_dir, "latest")
    check(os.path.exists(latest), f"--resume=True but {ckpt_dir} has no checkpoint; drop --resume to start afresh")
    with open(latest) as f:
        path = os.path.join(ckpt_dir, f.read().strip(), "data_order.json")
    if not os.path.exists(path):
        print(f"warning: {path} missing (an older checkpoint): the data order is not checked")
        return
    with open(path) as f:
        saved = json.load(f)
    changed = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in current.items() if saved.get(k) != v]
    check(not changed, f"--resume=True with a different data order than {path}:\n  " + "\n  ".join(changed)
          + "\nresume with the checkpoint's settings and data (samples/samples_sha1: the tokenized samples "
          "differ: data files or tokenizer), or start afresh in a new --out_dir")


model_dir = resolve_model(model)
tokenizer = load_tokenizer(model_dir)
pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
train, train_stats = load_samples(data, tokenizer, seq_len, master)
val = load_samples(val_data, tokenizer, seq_len, master)[0] if val_data else []
lengths = [len(ids) for ids, _ in train]
trained_per_sample = [sum(m) for _, m in train]
schedule = RowSchedule(lengths, seq_len, seed)
if master:
    print(f"train: {len(train)} samples, {sum(lengths):,} tokens "
          f"({sum(trained_per_sample):,} trained); {train_stats}; val: {len(val)} samples")
order = data_order(config, lengths, trained_per_sample)
ckpt_dir = os.path.join(out_dir, "deepspeed")
if resume:
    check_resume(ckpt_dir, order)  # before the model loads: a refusal costs seconds
if master:
    save_config(config, os.path.join(out_dir, "config.json"))  # every setting checked: the first write
    with open(os.path.join(out_dir, "ds_config.resolved.json"), "w") as f:
        json.dump(ds, f, indent=2)

# -----------------------------------------------------------------------------
# model, optimizer, learning-rate schedule, DeepSpeed engine
torch.manual_seed(seed)
if ds.get("zero_optimization", {}).get("stage") == 3:
    from transformers.integrations import HfDeepSpeedConfig
    _keep_alive = HfDeepSpeedConfig(ds)  # noqa: F841  makes from_pretrained partition (zero.Init)
net = AutoModelForCausalLM.from_pretrained(
    model_dir, dtype=torch.bfloat16 if bf16 else torch.float32,
    attn_implementation=attention)
if gradient_checkpointing:
    net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
net.config.use_cache = False
# on CPU the norms, rotary, SiLU gate and residual adds around the bf16 matmuls cost as much as the
# matmuls: compiled, each layer's element-wise work runs fused (GPU paths stay eager unless asked)
if wants_compiled_layers(compile_layers, torch.bfloat16 if bf16 else torch.float32, device):
    compiled = compile_decoder_layers(net)
    if master:
        print(f"torch.compile: {compiled} decoder layers (dynamic shapes; the first steps include the compiling)"
              if compiled else "torch.compile: no decoder layer class named in the model (_no_split_modules): eager")
# matrices decay, norms and biases do not; under ZeRO-3 a parameter's own shape is its
# (empty) local partition, its full shape is ds_shape
full_ndim = lambda p: len(p.ds_shape) if hasattr(p, "ds_shape") else p.ndim
groups = [{"params": [p for p in net.parameters() if full_ndim(p) >= 2], "weight_decay": weight_decay},
          {"params": [p for p in net.parameters() if full_ndim(p) < 2], "weight_decay": 0.0}]
# on CPU the fused kernel: the for-each AdamW makes full-size temporaries of DeepSpeed's flat fp32
# partitions every step (their page faults alone cost more than the update); GPUs keep the default
optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr,
                              betas=(adam_beta1, adam_beta2), eps=1e-8, fused=not cuda)
warmup = max(1, round(warmup_ratio * max_steps)) if max_steps else 0


def lr_factor(step):  # step = number of optimizer updates done
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
engine, _, _, _ = deepspeed.initialize(model=net, optimizer=optimizer, lr_scheduler=scheduler, config=ds)
n_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in net.parameters())
cfg = net.config


# -----------------------------------------------------------------------------
# resume: the engine's states, this rank's random states, the metrics logged up to the checkpoint
def rng_states(device):
    """The random states of this process: Python, CPU and, on GPU, this rank's device."""
    states = {"python": random.getstate(), "cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states, device):
    random.setstate(states["python"])
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


start_step = 0
if resume:
    with open(os.path.join(ckpt_dir, "latest")) as f:
        tag = f.read().strip()
    _, client = engine.load_checkpoint(ckpt_dir, tag=tag)
    start_step = client["step"]
    rng_path = os.path.join(ckpt_dir, tag, f"rng_rank{rank}.pt")
    if os.path.exists(rng_path):
        set_rng_states(torch.load(rng_path, weights_only=False), device)
    else:  # saved by fewer ranks, or an older checkpoint
        print(f"rank {rank}: {rng_path} missing; random states not restored")
    if master:
        print(f"resumed from step {start_step}")
metrics_path = os.path.join(out_dir, "metrics.jsonl")
if master:
    # a killed run may have logged steps past its last checkpoint: they are redone, so dropped
    kept = [r for _, r in read_jsonl(metrics_path) if r["step"] <= start_step] \
        if resume and os.path.exists(metrics_path) else []
    with open(metrics_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
log = JsonlWriter(metrics_path) if master else None


# -----------------------------------------------------------------------------
# the training loop: validation at step 0 and every eval_interval, checkpoints every save_interval
def all_sum(*values):
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def micro_batch(samples, rows):
    # an empty micro-batch (rows == []) still runs a forward, on one trained pad token that
    # the caller gives zero weight, so that every rank gathers the same ZeRO-3 weights
    return collate([samples[i] for row in rows for i in row] if rows else [([pad_id] * 2, [False, True])], pad_id)


def validate():
    engine.eval()
    rows = epoch_rows([len(ids) for ids, _ in val], seq_len, seed, 0)
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for batch_rows in rank_micro_batches(rows, rank, world, micro_batch_size):
            s, n = token_losses(engine, micro_batch(val, batch_rows), device, attention)
            if batch_rows:
                loss_sum, count = loss_sum + float(s), count + n
    engine.train()
    loss_sum, count = all_sum(loss_sum, count)
    return loss_sum / max(count, 1), int(count)


def save(step):
    tag = f"step{step:06d}"
    engine.save_checkpoint(ckpt_dir, tag=tag, client_state={"step": step})
    torch.save(rng_states(device), os.path.join(ckpt_dir, tag, f"rng_rank{rank}.pt"))
    if master:
        with open(os.path.join(ckpt_dir, tag, "data_order.json"), "w") as f:
            json.dump(order, f, indent=2)
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict()
    if master:
        hf_dir = os.path.join(out_dir, f"checkpoint-{step}")
        engine.module.save_pretrained(hf_dir, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(hf_dir)
        tags = sorted(t for t in os.listdir(ckpt_dir) if t.startswith("step"))
        for old in tags[:-keep_checkpoints]:
            shutil.rmtree(os.path.join(ckpt_dir, old), ignore_errors=True)
        final = os.path.join(out_dir, "final")
        if os.path.islink(final) or os.path.exists(final):
            os.remove(final) if os.path.islink(final) else shutil.rmtree(final)
        os.symlink(os.path.basename(hf_dir), final)
    dist.barrier()


if start_step == 0 and val:
    val_loss, val_tokens = validate()
    if master:
        print(f"step 0: val_loss {val_loss:.4f} over {val_tokens} tokens")
        log.write({"step": 0, "val_loss": val_loss, "val_tokens": val_tokens})
bar = tqdm(total=max_steps, initial=start_step, desc="train", disable=not master)
engine.train()
for step in range(start_step, max_steps):
    t0 = time.time()
    rows = schedule.rows_for_step(step, batch_size)
    step_trained = sum(trained_per_sample[i] for row in rows for i in row)
    step_tokens = sum(lengths[i] for row in rows for i in row)
    step_lr = scheduler.get_last_lr()[0]  # engine.step() at the last micro-batch moves it on
    micro_batches = rank_micro_batches(rows, rank, world, micro_batch_size)
    assert len(micro_batches) == grad_accum  # DeepSpeed steps the optimizer every grad_accum
    loss_sum = 0.0
    for batch_rows in micro_batches:
        s, _ = token_losses(engine, micro_batch(train, batch_rows), device, attention)
        weight = 1.0 if batch_rows else 0.0
        loss_sum += weight * float(s.detach())
        # DeepSpeed averages gradients over ranks, hence * world: the sum over all ranks and
        # micro-batches is then the gradient of (total loss / trained tokens of the step)
        engine.backward(s * (weight * world / max(step_trained, 1)), scale_wrt_gas=False)
        engine.step()
    if cuda:
        torch.cuda.synchronize()
    dt = time.time() - t0
    (loss_total,) = all_sum(loss_sum)
    done = step + 1
    if master and (done % log_interval == 0 or done == max_steps):
        grad_norm = engine.get_global_grad_norm()
        attn_flops = 6 * cfg.num_hidden_layers * cfg.hidden_size * sum(lengths[i] ** 2 for row in rows for i in row)
        record = {"step": done, "loss": loss_total / max(step_trained, 1),
                  "lr": step_lr,
                  "grad_norm": float(grad_norm) if grad_norm is not None else None,
                  "tokens_per_s": step_trained / dt, "real_tokens_per_s": step_tokens / dt,
                  "packing_efficiency": step_tokens / (len(rows) * seq_len),
                  "trained_tokens": step_trained, "epoch": schedule.epoch_of(step, batch_size),
                  "step_time_s": dt}
        if cuda:
            record["mfu"] = (6 * n_params * step_tokens + attn_flops) / dt / (world * peak_tflops * 1e12)
            record["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
    else:
        record = {}
    if val and eval_interval and done % eval_interval == 0:
        val_loss, val_tokens = validate()
        record.update(step=done, val_loss=val_loss, val_tokens=val_tokens)
    if master and record:
        log.write(record)
    bar.update(1)
    if save_interval and done % save_interval == 0 and done != max_steps:
        save(done)
bar.close()


# -----------------------------------------------------------------------------
# the end: the last checkpoint (final links to it) and loss.png
def write_loss_chart(metrics_path, path):
    """loss.png from metrics.jsonl: train and validation loss, learning rate, trained tokens/s."""
    rows = [r for _, r in read_jsonl(metrics_path)]
    train_rows = [r for r in rows if "loss" in r]
    val_rows = [r for r in rows if "val_loss" in r]
    if not train_rows and not val_rows:
        return None
    import matplotlib
    matplotlib.use("Agg")   # no display on servers
    import matplotlib.pyplot as plt
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    if train_rows:
        ax1.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], label="train", linewidth=1)
    if val_rows:
        ax1.plot([r["step"] for r in val_rows], [r["val_loss"] for r in val_rows], "o-", label="validation")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss (nats per trained token)")
    ax1.legend(loc="best", fontsize=8)
    ax2.plot([r["step"] for r in train_rows], [r["lr"] for r in train_rows])
    ax2.set_xlabel("step")
    ax2.set_ylabel("learning rate")
    ax3.plot([r["step"] for r in train_rows], [r["tokens_per_s"] for r in train_rows])
    ax3.set_xlabel("step")
    ax3.set_ylabel("trained tokens/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if max_steps > 0 and start_step < max_steps:
    save(max_steps)
if master:
    log.close()
    chart = write_loss_chart(metrics_path, os.path.join(out_dir, "loss.png"))
    print(f"done: {max_steps - start_step} steps; metrics in {metrics_path}{', chart ' + chart if chart else ''}; "
          f"model in {os.path.join(out_dir, 'final')}" if max_steps else f"done: metrics in {metrics_path}")

# every rank leaves the process group before it exits, so that its communication threads end here and
# not in the interpreter's teardown (a rank once died there: "terminate called without an active exception")
dist.barrier()
dist.destroy_process_group()
