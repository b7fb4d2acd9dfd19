"""Teacher-forced loss of a model on held-out conversations, per file: the mean cross-entropy
over the tokens 04_train.py would train on (assistant turns and their end-of-turn), in nats.
At the study's scale (a 135M model, minutes of CPU training) success rates are near zero for every
model, so this is the measure that can show the eta trade-off: lower loss on held-out agent
trajectories vs lower loss on held-out general conversations.
    python experiments/heldout_loss.py --model=runs/study/train/eta0.2/final \
        --data=held_in=a.jsonl,held_out=b.jsonl,general=c.jsonl --out=loss.json

Each file's loss comes with a 95% interval from a bootstrap over its conversations (a
conversation's tokens are not independent of each other), and the out file keeps every
conversation's loss sum and token count by id, so two models scored on the same files can be
compared pairwise (experiments/write_results.py does).
"""
import json
import os


# -----------------------------------------------------------------------------
model = ""            # a model dir; '' = the base model
data = ""             # name=file,name=file,...  (any record format 04_train.py reads)
limit = 40            # conversations per file (the first ones)
seq_len = 2048        # longer conversations are skipped and counted, as in training
out = ""              # a JSON file for the figures ('' = print only)
bootstrap = 2000      # resamples of the conversations for the 95% interval
dtype = "auto"        # auto: bf16 where the CPU computes it natively (AMX: several times faster than
                      # fp32; the loss itself is taken in fp32) | float32 | bfloat16
seed = 1234
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
config = configure(globals())

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from agentune.attention import token_losses  # noqa: E402
from agentune.chat import encode  # noqa: E402
from agentune.model import load_model, load_tokenizer, native_bf16  # noqa: E402
from agentune.packing import collate  # noqa: E402
from agentune.records import read_records, to_messages  # noqa: E402
from agentune.scoring import ratio_interval  # noqa: E402

if not data or any("=" not in part for part in data.split(",")):
    raise SystemExit(f"--data={data!r}: give name=file pairs, e.g. --data=agent=a.jsonl,general=b.jsonl")
if dtype not in ("auto", "float32", "bfloat16"):
    raise SystemExit(f"--dtype={dtype}: expected auto, float32 or bfloat16")
bf16 = dtype == "bfloat16" or (dtype == "auto" and native_bf16(torch.device("cpu")))
tokenizer = load_tokenizer(model)
net = load_model(model, dtype=torch.bfloat16 if bf16 else torch.float32).eval()
print(f"computing in {'bf16' if bf16 else 'fp32'}")
torch.set_grad_enabled(False)


results = {}
for name, path in (part.split("=", 1) for part in data.split(",")):
    too_long = 0
    per_conversation = {}   # id -> [loss sum, tokens]
    records = list(read_records(path))[:limit]
    for where, record in tqdm(records, desc=f"loss {name}"):
        ids, mask = encode(tokenizer, to_messages(record, where), where)
        if len(ids) > seq_len:
            too_long += 1
            continue
        # as in training: the first token has nothing before it to predict it; the mask path
        # (sdpa) because the model is loaded with the default attention, on the CPU
        batch = collate([(ids, [False] + mask[1:])], tokenizer.pad_token_id)
        loss_sum, count = token_losses(net, batch, "cpu", "sdpa")
        per_conversation[record.get("id", where)] = [round(float(loss_sum), 4), int(count)]
    if not per_conversation:
        raise SystemExit(f"{path}: no conversation fits seq_len={seq_len} ({too_long} too long)")
    sums, counts = zip(*per_conversation.values())
    low, high = ratio_interval(sums, counts, resamples=bootstrap, seed=seed)
    results[name] = {"loss": round(sum(sums) / sum(counts), 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
                     "tokens": sum(counts), "conversations": len(per_conversation), "too_long_skipped": too_long,
                     "per_conversation": per_conversation}
    print(f"{name}: loss {results[name]['loss']:.4f} [95% {low:.4f}, {high:.4f}] over {sum(counts)} tokens "
          f"({len(per_conversation)} conversations, {too_long} too long skipped)")
if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"model": model or "base", "dtype": "bfloat16" if bf16 else "float32", "files": dict(p.split("=", 1) for p in data.split(",")),
                   "loss": results}, f, indent=1)
    print(f"-> {out}")
