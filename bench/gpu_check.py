"""GPU checks that the CPU cannot make: packing exactness in bf16 on CUDA, 04_train.py through
DeepSpeed on CUDA (bf16, ZeRO-2 and ZeRO-3) with tokens/s, MFU and peak memory for a ~1B model,
and the packing-vs-padding benchmark at seq_len 4096.

    python bench/gpu_check.py --tokenizer_dir=DIR --data=FILES --out=DIR

The models are randomly initialised from their configs (SmolLM2-135M, and a 1.1B Llama with
TinyLlama's shape) with the base model's tokenizer: throughput and exactness do not depend on the
weights. Writes a JSON summary as its last line.
"""
import glob
import json
import os
import statistics
import subprocess
import sys

import torch  # noqa: E402

from agentune.config import configure  # noqa: E402

tokenizer_dir = ".gpu/tok"
data = ".gpu/data/general/alpaca_en_demo.json,.gpu/data/general/glaive_toolcall_en_demo.json"
out = "/tmp/gpu_check"
train_steps = 8
configure(globals())
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(name, **shape):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    path = os.path.join(out, name)
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    config = LlamaConfig.from_pretrained(tokenizer_dir)
    for k, v in shape.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


def exactness(model_dir):
    """Max |packed - alone| logits difference, fp32 and bf16, on CUDA with the block mask."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentune.chat import encode
    from agentune.attention import choose_implementation, packed_forward_kwargs
    from agentune.packing import collate
    from agentune.records import read_records, to_messages
    tok = AutoTokenizer.from_pretrained(model_dir)
    records = [r for _, r in read_records(data)][:6]
    samples = [encode(tok, to_messages(r, "x")) for r in records]
    result = {}
    implementation = choose_implementation()
    for dtype in (torch.float32, torch.bfloat16):
        if implementation != "sdpa" and dtype == torch.float32:
            continue  # flash kernels take 16-bit inputs only
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=implementation).cuda().eval()
        batch = collate(samples, 0)
        with torch.no_grad():
            packed = model(**packed_forward_kwargs(batch, implementation, "cuda")).logits[0]
            model.config._attn_implementation = "sdpa"  # each sample alone: plain causal attention
            cu = batch["cu_seqlens"].tolist()
            diffs, scale = [], []
            for k, (ids, _) in enumerate(samples):
                alone = model(input_ids=torch.tensor([ids], device="cuda"), use_cache=False).logits[0]
                diffs.append(float((packed[cu[k]:cu[k + 1]].float() - alone.float()).abs().max()))
                scale.append(float(alone.float().abs().max()))
        result[f"{implementation}_{str(dtype).split('.')[-1]}"] = {"max_abs_diff": max(diffs), "max_abs_logit": max(scale)}
    return result


def train(model_dir, tag, *args):
    run_dir = os.path.join(out, tag)
    cmd = [sys.executable, os.path.join(REPO, "04_train.py"), f"--model={model_dir}", f"--data={data}",
           "--val_data=", f"--out_dir={run_dir}", "--eval_interval=0", "--save_interval=0", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    print(proc.stdout[-1500:], proc.stderr[-3000:] if proc.returncode else "")
    if proc.returncode:
        return {"error": proc.stderr[-800:]}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f if "loss" in line]
    timed = steps[2:] or steps
    final = os.path.join(run_dir, "final")
    shards = glob.glob(os.path.join(final, "*.safetensors"))
    return {"steps": len(steps), "first_loss": steps[0]["loss"], "last_loss": steps[-1]["loss"],
            "tokens_per_s": statistics.median(s["real_tokens_per_s"] for s in timed),
            "trained_tokens_per_s": statistics.median(s["tokens_per_s"] for s in timed),
            "mfu": statistics.median(s["mfu"] for s in timed),
            "peak_mem_gb": max(s["peak_mem_gb"] for s in steps),
            "packing_efficiency": statistics.mean(s["packing_efficiency"] for s in steps),
            "checkpoint_bytes": sum(os.path.getsize(p) for p in shards)}


def main():
    os.makedirs(out, exist_ok=True)
    print(torch.__version__, torch.cuda.get_device_name(0))
    summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    small = make_model("smol135m")
    big = make_model("llama1b", hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4, head_dim=64)
    summary["exactness_135m"] = exactness(small)
    print(json.dumps(summary["exactness_135m"]))
    summary["train_1b_zero2"] = train(big, "t1b", "--seq_len=4096", "--batch_size=8", f"--max_steps={train_steps}")
    print(json.dumps(summary["train_1b_zero2"]))
    summary["train_135m_zero3"] = train(small, "t135z3", "--seq_len=4096", "--batch_size=4", "--max_steps=4",
                                        "--ds_config=ds_config_zero3.json")
    print(json.dumps(summary["train_135m_zero3"]))
    bench = subprocess.run([sys.executable, os.path.join(REPO, "bench", "train_throughput.py"), f"--model={small}",
                            "--seq_len=4096", "--rows=8", "--steps=4", "--agent_data=.gpu/raw/*.jsonl"],
                           capture_output=True, text=True, timeout=300)
    print(bench.stdout[-1500:], bench.stderr[-1500:] if bench.returncode else "")
    summary["throughput_bench_135m"] = json.loads(bench.stdout.strip().splitlines()[-1]) if bench.returncode == 0 else bench.stderr[-500:]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
