"""Stage 04: chat masking, packing exactness, loss normalisation, resume, checkpoints, bad input,
and a smoke run through the real deepspeed launcher."""
import glob
import json
import os
import shutil
import subprocess

import pytest
import torch

from agentune.attention import summed_cross_entropy, token_losses
from agentune.chat import encode
from agentune.packing import best_fit_decreasing, block_causal_mask, collate
from agentune.records import DataError, to_messages
from agentune.testing import PYTHON, REPO

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}")

CONVERSATION = [
    {"role": "system", "content": "You are an agent.", "loss": False},
    {"role": "user", "content": "List the files.", "loss": False},
    {"role": "assistant", "content": "Think: use ls.\nAct: bash\n```bash\nls\n```", "loss": True},
    {"role": "user", "content": "The output of the OS:\na.txt", "loss": False},
    {"role": "assistant", "content": "Act: answer(a.txt)", "loss": False},
    {"role": "user", "content": "Now count them.", "loss": False},
    {"role": "assistant", "content": "Act: answer(1)", "loss": True},
]


def trained_text(tokenizer, messages):
    ids, mask = encode(tokenizer, messages)
    return tokenizer.decode([t for t, m in zip(ids, mask) if m])


def test_chatml_masks_only_trained_assistant_turns(base_tokenizer):
    text = trained_text(base_tokenizer, CONVERSATION)
    assert text == "Think: use ls.\nAct: bash\n```bash\nls\n```<|im_end|>Act: answer(1)<|im_end|>"


def test_llama2_template_masks_content_and_eos(base_tokenizer):
    tok = base_tokenizer.__class__.from_pretrained(base_tokenizer.name_or_path)
    tok.chat_template = LLAMA2_TEMPLATE
    tok.eos_token, tok.bos_token = "</s>", "<s>"
    tok.add_special_tokens({"eos_token": "</s>", "bos_token": "<s>"})
    ids, mask = encode(tok, CONVERSATION)
    text = tok.decode([t for t, m in zip(ids, mask) if m])
    assert text.replace(" ", "") == "Think:usels.\nAct:bash\n```bash\nls\n```</s>Act:answer(1)</s>"
    full = tok.decode(ids)
    assert "[INST]" in full and "[INST]" not in text and "<<SYS>>" not in text


def test_sharegpt_loss_flags_and_roles():
    record = {"conversations": [
        {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1", "loss": False},
        {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2", "loss": None}]}
    msgs = to_messages(record, "x:1")
    assert [(m["role"], m["loss"]) for m in msgs] == [
        ("user", False), ("assistant", False), ("user", False), ("assistant", True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_equals_fp32_cross_entropy(dtype):
    """The CPU loss in fp32 chunks: the loss and the gradient of cross_entropy on fp32 logits (the
    gradient rounded to the logits' dtype), over more rows than one chunk holds."""
    torch.manual_seed(0)
    vocab = 5000  # 52 rows a chunk: 131 rows make three chunks, the last one short
    logits = (torch.randn(131, vocab) * 4).to(dtype)
    targets = torch.randint(0, vocab, (131,))
    ours, ref = logits.clone().requires_grad_(), logits.clone().float().requires_grad_()
    loss = summed_cross_entropy(ours, targets)
    expected = torch.nn.functional.cross_entropy(ref, targets, reduction="sum")
    (loss * 0.5).backward()
    (expected * 0.5).backward()
    assert loss.dtype == torch.float32 and abs(loss.item() - expected.item()) < 1e-5 * expected.item()
    assert ours.grad.dtype == dtype
    assert torch.allclose(ours.grad.float(), ref.grad.to(dtype).float(), atol=1e-6 if dtype == torch.float32 else 4e-3)


def test_best_fit_decreasing_fills_rows():
    lengths = [700, 300, 500, 500, 250, 250, 1000, 24]
    bins = best_fit_decreasing(lengths, 1024)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 1024 for b in bins)
    assert len(bins) == 4  # 3524 tokens: the optimum is 4 rows


PACKED_CONVERSATIONS = [
    CONVERSATION,
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4", "loss": True}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue.", "loss": True}]]


@pytest.mark.parametrize("implementation", ["sdpa", "segment_sdpa"])
def test_packed_logits_and_loss_equal_one_by_one(base_tokenizer, implementation):
    """The real base model in fp32: a packed row gives every sample exactly the logits it gets
    alone, with the dense block mask and with per-sample attention alike."""
    from agentune.attention import choose_implementation, packed_forward_kwargs
    from agentune.model import load_model
    model = load_model("").eval()
    samples = [encode(base_tokenizer, c) for c in PACKED_CONVERSATIONS]
    batch = collate(samples, base_tokenizer.pad_token_id)
    model.config._attn_implementation = choose_implementation(implementation)
    with torch.no_grad():
        if implementation == "sdpa":  # the mask, spelled out
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                           attention_mask=block_causal_mask(batch["cu_seqlens"]), use_cache=False).logits[0]
        else:
            packed = model(**packed_forward_kwargs(batch, implementation, "cpu")).logits[0]
        model.config._attn_implementation = "sdpa"  # each sample alone: plain causal attention
        cu = batch["cu_seqlens"].tolist()
        total_loss, total_count = 0.0, 0
        for k, (ids, mask) in enumerate(samples):
            alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[cu[k]:cu[k + 1]], alone, atol=2e-4, rtol=1e-4)
            labels = torch.tensor([t if m else -100 for t, m in zip(ids, mask)])
            total_loss += float(torch.nn.functional.cross_entropy(alone[:-1], labels[1:], reduction="sum"))
            total_count += int((labels[1:] != -100).sum())

    class Engine:
        __call__ = staticmethod(lambda **kw: model(**kw))
    model.config._attn_implementation = implementation
    with torch.no_grad():
        loss_sum, count = token_losses(Engine(), batch, torch.device("cpu"), implementation)
    assert count == total_count
    assert abs(float(loss_sum) - total_loss) < 1e-3 * total_count


# bf16 compute (fp32 loss) vs fp32, mean loss per trained token on the base model; measured 0.017
# (3 short samples, test_bf16_...) and 0.001 (8 validation records, test_step0_...)
BF16_LOSS_TOLERANCE = 0.03


def test_bf16_segment_attention_and_trained_only_head(base_tokenizer):
    """The CPU fast path (bf16 weights, per-sample attention, LM head on trained positions only):
    packed equals one by one in bf16 up to bf16 rounding, and its loss is the fp32 loss within
    BF16_LOSS_TOLERANCE per token."""
    from agentune.attention import choose_implementation, token_losses
    from agentune.model import load_model
    samples = [encode(base_tokenizer, c) for c in PACKED_CONVERSATIONS]
    batch = collate(samples, base_tokenizer.pad_token_id)
    implementation = choose_implementation("segment_sdpa")
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load_model("", dtype=dtype).eval()
        model.config._attn_implementation = implementation
        with torch.no_grad():
            packed_sum, count = token_losses(lambda **kw: model(**kw), batch, "cpu", implementation)
            alone_sum = sum(float(token_losses(lambda **kw: model(**kw), collate([s], 0), "cpu", implementation)[0])
                            for s in samples)
        losses[dtype] = float(packed_sum) / count
        assert abs(float(packed_sum) - alone_sum) / count < (1e-5 if dtype == torch.float32 else 1e-3)
    assert abs(losses[torch.bfloat16] - losses[torch.float32]) < BF16_LOSS_TOLERANCE, losses


def test_compiled_decoder_layers_match_eager(base_tokenizer):
    """--compile_layers (on by default for bf16 on CPU): on a packed row of the real base model the
    compiled bf16 layers are as close to fp32 as the eager bf16 ones, in the loss and the gradients
    (measured: gradients 4.3% off fp32 compiled, 5.2% eager; inductor keeps the fused element-wise
    work in fp32), and packed still equals one by one (other row lengths: dynamic shapes)."""
    from agentune.attention import choose_implementation, token_losses
    from agentune.model import compile_decoder_layers, load_model
    samples = [encode(base_tokenizer, c) for c in PACKED_CONVERSATIONS]
    batch = collate(samples, base_tokenizer.pad_token_id)
    implementation = choose_implementation("segment_sdpa")
    runs = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("compiled", torch.bfloat16)):
        model = load_model("", dtype=dtype).train()
        model.config._attn_implementation = implementation
        if name == "compiled":
            assert compile_decoder_layers(model) == model.config.num_hidden_layers
        loss_sum, count = token_losses(lambda **kw: model(**kw), batch, "cpu", implementation)
        loss_sum.backward()
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters()])
        # with autograd on, as the packed row: compiled, the training graph and the no-grad one round
        # differently (0.01 per token here); packed vs alone agree within each
        alone_sum = sum(float(token_losses(lambda **kw: model(**kw), collate([s], 0), "cpu", implementation)[0].detach())
                        for s in samples)
        runs[name] = (float(loss_sum.detach()) / count, grads, alone_sum / count)
    fp32_loss, fp32_grads, _ = runs["fp32"]
    error = {name: float((runs[name][1] - fp32_grads).norm() / fp32_grads.norm()) for name in ("bf16", "compiled")}
    assert error["compiled"] < 1.25 * error["bf16"], error
    loss, _, alone = runs["compiled"]
    assert abs(loss - fp32_loss) < BF16_LOSS_TOLERANCE, (loss, fp32_loss)
    assert abs(alone - loss) < 1e-3, (alone, loss)  # the eager bf16 bound (test above)


def write_records(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def train_records(n, seed=0):
    import random
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    out = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(3, 40)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(2, 60)))
        out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return out


def run_train(tmp, model_dir, *args, launcher=None, check=True):
    cmd = (launcher or [PYTHON]) + [os.path.join(REPO, "04_train.py"), f"--model={model_dir}",
                                    f"--data={tmp}/train.jsonl", f"--val_data={tmp}/val.jsonl",
                                    "--seq_len=256", "--lr=1e-3", "--eval_interval=2", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    write_records(tmp / "train.jsonl", train_records(40))
    write_records(tmp / "val.jsonl", train_records(8, seed=1))
    return tmp


def test_loss_normalisation_independent_of_accumulation(train_dir, tiny_model_dir):
    """Same global batch split 1x4, 2x2 and 4x1 (micro x accumulation): same loss, same gradient."""
    runs = []
    for micro in (1, 2, 4):
        out = train_dir / f"ga{micro}"
        run_train(train_dir, tiny_model_dir, f"--out_dir={out}", "--max_steps=2", "--batch_size=4",
                  f"--micro_batch_size={micro}", "--save_interval=0", "--precision=fp32")
        runs.append([m for m in metrics(out) if "loss" in m])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a["trained_tokens"] == b["trained_tokens"]
            assert abs(a["loss"] - b["loss"]) < 1e-5
            assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4 * max(1.0, a["grad_norm"])


def test_resume_reproduces_losses_and_checkpoint_loads(train_dir, tiny_model_dir):
    full = train_dir / "full"
    run_train(train_dir, tiny_model_dir, f"--out_dir={full}", "--max_steps=4", "--batch_size=2",
              "--save_interval=2")
    # an interrupted run: the state of step 2 only, with metrics logged past it (killed at step 3)
    part = train_dir / "part"
    shutil.copytree(full, part, symlinks=True)
    shutil.rmtree(part / "deepspeed" / "step000004")
    (part / "deepspeed" / "latest").write_text("step000002")
    lines = (part / "metrics.jsonl").read_text().splitlines()
    (part / "metrics.jsonl").write_text("\n".join(l for l in lines if json.loads(l)["step"] <= 3) + "\n")
    run_train(train_dir, tiny_model_dir, f"--out_dir={part}", "--max_steps=4", "--batch_size=2",
              "--save_interval=2", "--resume=True")
    a, b = metrics(full), metrics(part)
    assert [m["step"] for m in a] == [m["step"] for m in b]
    for x, y in zip(a, b):
        for key in ("loss", "lr", "val_loss"):
            if key in x:
                assert abs(x[key] - y[key]) < 1e-6, (x, y)

    # the exported checkpoint is a plain Hugging Face directory that generates
    from transformers import AutoModelForCausalLM, AutoTokenizer
    final = full / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.chat_template
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5 or out[0, -1] == tok.eos_token_id


@pytest.mark.parametrize("precision,attention,tolerance", [
    ("fp32", "sdpa", 1e-4), ("fp32", "auto", 1e-4), ("auto", "auto", BF16_LOSS_TOLERANCE)])
def test_step0_val_loss_matches_plain_transformers(train_dir, precision, attention, tolerance):
    """--max_steps=0 on the real base model: val_loss equals a per-sample fp32 reference, exactly
    in fp32 (dense mask or per-sample attention), within BF16_LOSS_TOLERANCE on the bf16 default."""
    from agentune.model import load_model, load_tokenizer
    out = train_dir / f"step0_{precision}_{attention}"
    run_train(train_dir, "", f"--out_dir={out}", "--max_steps=0", "--batch_size=1",
              f"--precision={precision}", f"--attn_implementation={attention}")
    (record,) = metrics(out)
    model, tok = load_model("").eval(), load_tokenizer("")
    loss_sum, count = 0.0, 0
    with open(train_dir / "val.jsonl") as f:
        for line in f:
            messages = [{"role": m["role"], "content": m["content"]} for m in json.loads(line)["messages"]]
            prompt = tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
            whole = tok.apply_chat_template(messages, tokenize=False)
            answer = messages[-1]["content"] + "<|im_end|>"
            ids = tok(prompt + answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
            n_answer = len(tok(answer, add_special_tokens=False)["input_ids"])
            assert whole.startswith(prompt + answer)
            labels = ids.clone()
            labels[:, : ids.shape[1] - n_answer] = -100
            with torch.no_grad():
                loss = model(input_ids=ids, labels=labels).loss  # mean over this sample's tokens
            loss_sum += float(loss) * n_answer
            count += n_answer
    assert record["val_tokens"] == count
    assert abs(record["val_loss"] - loss_sum / count) < tolerance


@pytest.mark.parametrize("line,message", [
    ('{"messages": [{"role": "user", "content": "x"}', "invalid JSON"),
    ('{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}', "unknown role"),
    ('{"messages": []}', "no turns"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "loss": false}]}',
     "no assistant turn is trained"),
    ('{"text": "hello"}', "unknown record format"),
])
def test_bad_input_names_file_and_line(tmp_path, tiny_model_dir, line, message):
    good = json.dumps(train_records(1)[0])
    write_records(tmp_path / "train.jsonl", [])
    (tmp_path / "train.jsonl").write_text(good + "\n" + line + "\n")
    (tmp_path / "val.jsonl").write_text(good + "\n")
    proc = run_train(tmp_path, tiny_model_dir, f"--out_dir={tmp_path}/out", "--max_steps=1",
                     "--batch_size=1", check=False)
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert f"train.jsonl:2: " in err and message in err, err[-2000:]
    assert "Traceback" not in err


def test_model_without_chat_template_is_refused(tmp_path, tiny_model_dir):
    model_dir = tmp_path / "nochat"
    shutil.copytree(tiny_model_dir, model_dir)
    for name in ("chat_template.jinja",):
        if (model_dir / name).exists():
            (model_dir / name).unlink()
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (model_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    write_records(tmp_path / "train.jsonl", train_records(2))
    write_records(tmp_path / "val.jsonl", train_records(1))
    proc = run_train(tmp_path, model_dir, f"--out_dir={tmp_path}/out", "--max_steps=1", check=False)
    assert proc.returncode != 0 and "no chat template" in proc.stderr + proc.stdout


def test_unknown_setting_is_an_error(tmp_path, tiny_model_dir):
    proc = run_train(tmp_path, tiny_model_dir, "--learning_rate=1", check=False)
    assert proc.returncode != 0 and "unknown setting --learning_rate" in proc.stderr


def test_deepspeed_launcher_smoke(train_dir, tiny_model_dir):
    """One run through the real `deepspeed` launcher (CPU, one process, ZeRO-3)."""
    deepspeed = os.path.join(os.path.dirname(PYTHON), "deepspeed")
    out = train_dir / "launcher"
    shm = "/dev/shm/deepspeed_allreduce_buffer_*_29531_*"  # DeepSpeed's CPU all-reduce buffer (69 MB of RAM)
    for stale in glob.glob(shm):  # left by a run of an older version
        os.remove(stale)
    proc = run_train(train_dir, tiny_model_dir, f"--out_dir={out}", "--max_steps=2", "--batch_size=2",
                     "--ds_config=" + os.path.join(REPO, "ds_config_zero3.json"),
                     launcher=[deepspeed, "--num_gpus=1", "--master_port=29531"])
    steps = [m for m in metrics(out) if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2] and all(m["loss"] > 0 for m in steps)
    assert not glob.glob(shm), "the run left its shared-memory buffer behind"
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert all(p.abs().sum() > 0 for p in model.parameters())  # ZeRO-3 did not save empty shards


def test_resume_refuses_a_changed_data_order(tmp_path, tiny_model_dir):
    write_records(tmp_path / "train.jsonl", train_records(12))
    write_records(tmp_path / "val.jsonl", train_records(2, seed=1))
    out = tmp_path / "out"
    run_train(tmp_path, tiny_model_dir, f"--out_dir={out}", "--max_steps=1", "--batch_size=2")
    assert (out / "deepspeed" / "step000001" / "rng_rank0.pt").exists()
    for change, expected in (("--seed=7", "seed: checkpoint 1234, now 7"),
                             ("--batch_size=4", "batch_size: checkpoint 2, now 4")):
        proc = run_train(tmp_path, tiny_model_dir, f"--out_dir={out}", "--max_steps=2", "--batch_size=2",
                         "--resume=True", change, check=False)
        err = proc.stderr + proc.stdout
        assert proc.returncode != 0 and expected in err and "Traceback" not in err, err[-3000:]
    write_records(tmp_path / "train.jsonl", train_records(12, seed=5))  # same file name, new samples
    proc = run_train(tmp_path, tiny_model_dir, f"--out_dir={out}", "--max_steps=2", "--batch_size=2",
                     "--resume=True", check=False)
    err = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "samples_sha1: checkpoint" in err and "Traceback" not in err, err[-3000:]


def test_seq_len_travels_from_the_mix_and_loss_chart(tmp_path, tiny_model_dir):
    """04 reads the seq_len 03_mix.py recorded next to its data (unless --seq_len is given) and
    ends with loss.png drawn from metrics.jsonl."""
    write_records(tmp_path / "train.jsonl", train_records(8))
    (tmp_path / "mix_report.json").write_text(json.dumps({"seq_len": 192, "model": tiny_model_dir}))
    out = tmp_path / "out"
    cmd = [PYTHON, os.path.join(REPO, "04_train.py"), f"--model={tiny_model_dir}", f"--data={tmp_path}/train.jsonl",
           "--val_data=", "--max_steps=1", "--batch_size=2", "--precision=fp32", f"--out_dir={out}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["seq_len"] == 192
    assert "seq_len = 192 (from" in proc.stdout
    assert (out / "loss.png").stat().st_size > 0
