"""Stage 04: supervised fine-tuning on packed sequences, loss on the assistant turns only.

    python 04_train.py --preset=cpu                      # one process, still through DeepSpeed
    deepspeed --num_gpus=8 04_train.py --data=data/train.jsonl
    sbatch slurm/train_multinode.sbatch                  # many nodes

Samples are packed best-fit-decreasing into rows of seq_len tokens; position ids restart per
sample and attention never crosses a sample (a varlen flash kernel on GPU: flash-attn, or PyTorch's
own; an exact block-diagonal causal mask otherwise, see agentune/attention.py). The loss is the mean over every trained token of the global batch
(all micro-batches, accumulation steps and ranks), not a mean of per-batch means.
"""
import json
import math
import os
import shutil
import socket
import sys
import time

import torch
from tqdm import tqdm

from agentune.chat import encode
from agentune.config import configure, save_config
from agentune.attention import choose_implementation, token_losses
from agentune.packing import collate, epoch_rows
from agentune.records import DataError, JsonlWriter, read_jsonl, read_records, to_messages

# ---------------------------------------------------------------------------------------------
# settings (override as --name=value; --preset=NAME first applies a block of them)
data = "data/train.jsonl"          # training records (messages or conversations), files or globs
val_data = "data/val.jsonl"        # '' to skip validation
model = ""                         # Hugging Face model dir; '' = SmolLM2-135M-Instruct
out_dir = "out/train"
resume = False                     # continue from the latest checkpoint in out_dir
preset = "paper"                   # paper | cpu | 7b | 13b | 70b (see PRESETS)
seq_len = 4096                     # tokens per packed row
batch_size = 64                    # packed rows per optimizer step, over all ranks
micro_batch_size = 1               # packed rows per forward/backward on one rank
max_steps = 2000
lr = 5e-5
min_lr_ratio = 0.1                 # cosine decays to lr * min_lr_ratio
warmup_ratio = 0.02                # paper: 2% warmup
weight_decay = 0.0
adam_beta1 = 0.9
adam_beta2 = 0.95
grad_clip = 1.0
seed = 1234
save_interval = 500                # steps between checkpoints (and one at the end)
keep_checkpoints = 2               # DeepSpeed states kept for resume (HF exports are all kept)
eval_interval = 100                # steps between validations (and one at step 0)
log_interval = 1
truncate = False                   # cut samples longer than seq_len instead of dropping them
skip_bad = False                   # count and skip bad records instead of stopping on the first
ds_config = "ds_config.json"       # ds_config_zero3.json for ZeRO-3
gradient_checkpointing = False
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
# ---------------------------------------------------------------------------------------------


def apply_preset(argv):
    chosen = [a.split("=", 1)[1] for a in argv if a.startswith("--preset=")]
    name = chosen[-1] if chosen else preset
    if name not in PRESETS:
        sys.exit(f"config error: unknown --preset={name}; known: {', '.join(PRESETS)}")
    globals().update(PRESETS[name])


def init_distributed():
    """Single-process defaults so that plain `python 04_train.py` goes through DeepSpeed too."""
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import deepspeed
    deepspeed.init_distributed()
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


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


def main():
    apply_preset(sys.argv[1:])
    config = configure(globals())
    rank, world, local_rank = init_distributed()
    master = rank == 0
    import deepspeed
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    from agentune.model import load_tokenizer, resolve_model

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    attention = choose_implementation()
    bf16 = cuda and torch.cuda.is_bf16_supported()

    # --- batch geometry
    if batch_size % (micro_batch_size * world):
        sys.exit(f"config error: batch_size={batch_size} must be a multiple of micro_batch_size "
                 f"({micro_batch_size}) x ranks ({world})")
    grad_accum = batch_size // (micro_batch_size * world)
    ds_path = ds_config if os.path.exists(ds_config) else os.path.join(os.path.dirname(os.path.abspath(__file__)), ds_config)
    if not os.path.exists(ds_path):
        sys.exit(f"config error: --ds_config={ds_config}: file not found")
    with open(ds_path) as f:
        ds = json.load(f)
    ds.update(train_batch_size=batch_size, train_micro_batch_size_per_gpu=micro_batch_size,
              gradient_accumulation_steps=grad_accum, gradient_clipping=grad_clip,
              bf16={"enabled": bf16}, steps_per_print=10**9)
    ds.pop("fp16", None)
    if master:
        os.makedirs(out_dir, exist_ok=True)
        save_config(config, os.path.join(out_dir, "config.json"))
        with open(os.path.join(out_dir, "ds_config.resolved.json"), "w") as f:
            json.dump(ds, f, indent=2)
        print(f"ranks {world}, grad accumulation {grad_accum}, device {device}, "
              f"attention {attention if attention != 'sdpa' else 'block-diagonal sdpa'}, "
              f"{'bf16' if bf16 else 'fp32'}, ZeRO stage {ds.get('zero_optimization', {}).get('stage', 0)}")

    # --- data
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

    # --- model, optimizer, schedule
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
    # matrices decay, norms and biases do not; under ZeRO-3 a parameter's own shape is its
    # (empty) local partition, its full shape is ds_shape
    full_ndim = lambda p: len(p.ds_shape) if hasattr(p, "ds_shape") else p.ndim
    groups = [{"params": [p for p in net.parameters() if full_ndim(p) >= 2], "weight_decay": weight_decay},
              {"params": [p for p in net.parameters() if full_ndim(p) < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr,
                                  betas=(adam_beta1, adam_beta2), eps=1e-8)
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

    # --- resume
    ckpt_dir = os.path.join(out_dir, "deepspeed")
    start_step = 0
    if resume:
        if not os.path.exists(os.path.join(ckpt_dir, "latest")):
            sys.exit(f"--resume=True but {ckpt_dir} has no checkpoint; drop --resume to start afresh")
        _, client = engine.load_checkpoint(ckpt_dir)
        start_step = client["step"]
        torch.set_rng_state(client["rng"])
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

    def all_sum(*values):
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def validate():
        engine.eval()
        rows = epoch_rows([len(ids) for ids, _ in val], seq_len, seed, 0)[rank::world]
        loss_sum, count = 0.0, 0
        with torch.no_grad():
            for r in range(0, len(rows), micro_batch_size):
                batch = collate([val[i] for row in rows[r:r + micro_batch_size] for i in row], pad_id)
                s, n = token_losses(engine, batch, device, attention)
                loss_sum, count = loss_sum + float(s), count + n
        engine.train()
        loss_sum, count = all_sum(loss_sum, count)
        return loss_sum / max(count, 1), int(count)

    def save(step):
        engine.save_checkpoint(ckpt_dir, tag=f"step{step:06d}", client_state={"step": step, "rng": torch.get_rng_state()})
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

    # --- training loop
    if start_step == 0 and val:
        val_loss, val_tokens = validate()
        if master:
            print(f"step 0: val_loss {val_loss:.4f} over {val_tokens} tokens")
            log.write({"step": 0, "val_loss": val_loss, "val_tokens": val_tokens})
    rows_per_rank = micro_batch_size * grad_accum
    bar = tqdm(total=max_steps, initial=start_step, desc="train", disable=not master)
    engine.train()
    for step in range(start_step, max_steps):
        t0 = time.time()
        rows = schedule.rows_for_step(step, batch_size)
        step_trained = sum(trained_per_sample[i] for row in rows for i in row)
        step_tokens = sum(lengths[i] for row in rows for i in row)
        my_rows = rows[rank * rows_per_rank:(rank + 1) * rows_per_rank]
        loss_sum = 0.0
        for m in range(grad_accum):
            samples = [train[i] for row in my_rows[m * micro_batch_size:(m + 1) * micro_batch_size] for i in row]
            s, _ = token_losses(engine, collate(samples, pad_id), device, attention)
            loss_sum += float(s.detach())
            # DeepSpeed averages gradients over ranks, hence * world: the sum over all ranks and
            # micro-batches is then the gradient of (total loss / trained tokens of the step)
            engine.backward(s * world / max(step_trained, 1), scale_wrt_gas=False)
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
                      "lr": scheduler.get_last_lr()[0],
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
    if max_steps > 0 and start_step < max_steps:
        save(max_steps)
    if master:
        print(f"done: {max_steps - start_step} steps; metrics in {metrics_path}; "
              f"model in {os.path.join(out_dir, 'final')}" if max_steps else f"done: metrics in {metrics_path}")
        log.close()


if __name__ == "__main__":
    main()
