"""Stage 03: the hybrid training mix (AgentTuning's eta: share of agent data, 0.2 is best).

Agent data (02_filter.py's output, or AgentInstruct-style `conversations` files) and general data
(ShareGPT incl. function_call/observation + tools, Alpaca, OpenAI messages) are converted to
training records. A held-out slice of each kind goes to val.jsonl; from the rest, train.jsonl gets
`total` samples of which a share eta is agent data, counted in samples (as the paper does: per
example) or in trained tokens (the assistant tokens the loss is computed on). A kind is sampled in
whole shuffled passes over its records, so a record is repeated only when the kind is upsampled
(effective epochs > 1), and at most once more than any other record.

    python 03_mix.py --eta=0.2 --total=10000
    python 03_mix.py --eta=0.2 --eta_unit=tokens               # eta of the trained tokens
    python 03_mix.py --eta=1.0 --general_data=[]               # agent data only

Writes to out_dir (default data/mix): train.jsonl, val.jsonl, mix_report.json (samples, tokens and
effective epochs per source, the achieved eta, the seq_len and tokenizer 04_train.py takes over)
and config.json (the resolved settings).
"""
import json
import os
import random
from collections import Counter, defaultdict, namedtuple

from tqdm import tqdm

from agentune.chat import encode
from agentune.config import check, configure, save_config
from agentune.model import load_tokenizer
from agentune.paths import data_path
from agentune.records import expand_paths, read_jsonl, to_messages, upstream_report, write_jsonl

# -----------------------------------------------------------------------------
# settings: each one can be overridden as --name=value (--help lists them with these comments)
agent_data = ["data/filtered/agent.jsonl"]   # files or globs: 02_filter.py output or AgentInstruct
general_data = [data_path("general", "alpaca_en_demo.json"),   # files or globs of general chat data
                data_path("general", "glaive_toolcall_en_demo.json")]
out_dir = "data/mix"      # train.jsonl, val.jsonl, mix_report.json, config.json
eta = 0.2                 # share of agent data in train.jsonl
eta_unit = "samples"      # samples: eta of the records; tokens: eta of the trained (assistant) tokens
total = 0                 # training samples; 0: every agent record once, total = agent records / eta
val_fraction = 0.05       # held out of each kind (at least one record when the kind has two)
seq_len = 0               # records longer than this many tokens are skipped (and counted); 0 = the seq_len
                          # 02_filter.py used (its report.json next to agent_data), else 4096
model = ""                # the training tokenizer; '' = the one 02_filter.py used, else the default base model
seed = 1234               # the hold-out, the draws of each kind and the order of train.jsonl
# -----------------------------------------------------------------------------
config = configure(globals())

# -----------------------------------------------------------------------------
# check every setting before anything is written
check(eta_unit in ("samples", "tokens"), f"--eta_unit={eta_unit}: use samples or tokens")
check(0.0 <= eta <= 1.0, f"--eta={eta}: eta is a share, between 0 and 1")
check(total >= 0, f"--total={total}: 0 (from the agent data) or more samples")
check(0.0 <= val_fraction < 1.0, f"--val_fraction={val_fraction}: a share in [0, 1)")
check(seq_len >= 0, f"--seq_len={seq_len}: 0 (from 02_filter.py) or more tokens")
agent_files = expand_paths(agent_data) if agent_data else []       # a missing file fails here
general_files = expand_paths(general_data) if general_data else []
# seq_len and the tokenizer travel with the data: 02 fixed them for the agent data it filtered
filter_report = upstream_report(agent_files[0], "report.json") if agent_files and eta > 0 else None
filter_settings = (filter_report or {}).get("settings", {})
if not seq_len:
    seq_len = int(filter_settings.get("seq_len") or 4096)
    print(f"seq_len = {seq_len} ({'from 02_filter.py report.json' if filter_settings.get('seq_len') else 'default'})")
elif filter_settings.get("seq_len") and filter_settings["seq_len"] != seq_len:
    print(f"warning: --seq_len={seq_len} but 02_filter.py kept trajectories of up to {filter_settings['seq_len']} tokens")
if not model and filter_settings.get("model"):
    model = filter_settings["model"]
    print(f"model (tokenizer) = {model!r} (from 02_filter.py report.json)")
config.update(seq_len=seq_len, model=model)
save_config(config, os.path.join(out_dir, "config.json"))  # the first write: makes out_dir

# -----------------------------------------------------------------------------
# reading, holding out and drawing the records of one kind
Sample = namedtuple("Sample", "record kind tokens trained_tokens")


def load(kind, paths):
    """Training records of one kind: id, source, messages (+ reward) and their token counts."""
    records, too_long = [], Counter()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        for where, raw in tqdm(list(read_jsonl(path)), desc=f"{kind}: {os.path.basename(path)}", leave=False):
            messages = to_messages(raw, where)
            ids, mask = encode(tokenizer, messages, where)
            source = raw.get("source") or f"{kind}:{stem}"
            if len(ids) > seq_len:
                too_long[source] += 1
                continue
            record = {"id": str(raw.get("id") or f"{stem}:{where[len(path):].strip(':[]')}"),
                      "source": source, "messages": messages}
            if "reward" in raw:
                record["reward"] = raw["reward"]
            records.append(Sample(record, kind, len(ids), sum(mask)))
    for source, n in too_long.items():
        print(f"skipped {n} records of {source} longer than seq_len={seq_len} tokens")
    return records


def hold_out(records, rng):
    """(train, val): a val_fraction slice of the records, at least one when there are two."""
    records = records[:]
    rng.shuffle(records)
    n_val = round(val_fraction * len(records))
    if val_fraction > 0 and len(records) >= 2:
        n_val = max(n_val, 1)
    return records[n_val:], records[:n_val]


def passes(records, count, rng):
    """`count` records drawn in whole shuffled passes: every prefix repeats records evenly."""
    out = []
    while len(out) < count:
        permutation = records[:]
        rng.shuffle(permutation)
        out += permutation
    return out[:count]


def cumulative(values):
    sums = [0]
    for v in values:
        sums.append(sums[-1] + v)
    return sums


# -----------------------------------------------------------------------------
# hold out val, draw `total` training samples with the agent share eta
tokenizer = load_tokenizer(model)
kinds = {"agent": load("agent", agent_files), "general": load("general", general_files)}
train_pool, val = {}, []
for kind, records in kinds.items():
    train_pool[kind], held = hold_out(records, random.Random(f"{seed}:holdout:{kind}"))
    val += held
    print(f"{kind}: {len(records)} records, {len(held)} held out for val")
if eta > 0 and not train_pool["agent"]:
    raise SystemExit(f"eta={eta} needs agent data, but --agent_data={agent_data} gave no training records")
if eta < 1 and not train_pool["general"]:
    raise SystemExit(f"eta={eta} needs general data, but --general_data={general_data} gave no training records")

if total <= 0:
    total = round(len(train_pool["agent"]) / eta) if eta > 0 else len(train_pool["general"])
# each kind's draw order; the mix takes a prefix of each, so a different split between the kinds
# (as the token search below tries) changes how much of each stream is used, never its order
streams = {kind: passes(train_pool[kind], total, random.Random(f"{seed}:{kind}")) if train_pool[kind] else []
           for kind in kinds}
trained = {kind: cumulative(sample.trained_tokens for sample in streams[kind]) for kind in kinds}
if eta_unit == "samples" or eta in (0.0, 1.0):
    n_agent = round(eta * total)
else:
    # the agent share of trained tokens grows with the number of agent samples: take the number
    # of agent samples whose share is closest to eta
    def agent_share(k):
        agent, general = trained["agent"][k], trained["general"][total - k]
        return agent / (agent + general) if agent + general else 0.0
    low, high = 0, total
    while low < high:  # the first k with a share >= eta
        mid = (low + high) // 2
        low, high = (mid + 1, high) if agent_share(mid) < eta else (low, mid)
    n_agent = min((k for k in (low - 1, low) if 0 <= k <= total), key=lambda k: abs(agent_share(k) - eta))
train = streams["agent"][:n_agent] + streams["general"][:total - n_agent]
random.Random(f"{seed}:shuffle").shuffle(train)
random.Random(f"{seed}:shuffle-val").shuffle(val)

# -----------------------------------------------------------------------------
# write train, val and the report (per kind and per source: samples, tokens, effective epochs)
write_jsonl(os.path.join(out_dir, "train.jsonl"), (sample.record for sample in train))
write_jsonl(os.path.join(out_dir, "val.jsonl"), (sample.record for sample in val))

stats = defaultdict(lambda: {"unique_records": 0, "samples": 0, "tokens": 0, "trained_tokens": 0, "epochs": 0.0})
for kind in kinds:
    for sample in train_pool[kind]:
        for key in (kind, sample.record["source"]):
            stats[key]["unique_records"] += 1
for sample in train:
    for key in (sample.kind, sample.record["source"]):
        stats[key]["samples"] += 1
        stats[key]["tokens"] += sample.tokens
        stats[key]["trained_tokens"] += sample.trained_tokens
for row in stats.values():
    row["epochs"] = row["samples"] / row["unique_records"] if row["unique_records"] else 0.0
all_trained = stats["agent"]["trained_tokens"] + stats["general"]["trained_tokens"]
achieved = {"samples": stats["agent"]["samples"] / len(train) if train else 0.0,
            "tokens": stats["agent"]["trained_tokens"] / all_trained if all_trained else 0.0}
report = {"eta": eta, "eta_unit": eta_unit, "achieved": achieved, "train": len(train), "val": len(val),
          "val_sources": dict(Counter(sample.record["source"] for sample in val)),
          "kinds": {kind: stats[kind] for kind in kinds},
          "sources": {key: row for key, row in sorted(stats.items()) if key not in kinds},
          # what 04_train.py reads instead of having them retyped: the length limit the mix was
          # cut to and the tokenizer that counted it
          "seq_len": seq_len, "tokenizer": tokenizer.name_or_path, "model": model, "settings": config}
with open(os.path.join(out_dir, "mix_report.json"), "w") as f:
    json.dump(report, f, indent=1)
    f.write("\n")

header = ["source", "unique", "samples", "epochs", "tokens", "trained_tokens"]
rows = [[key, row["unique_records"], row["samples"], f"{row['epochs']:.2f}", row["tokens"], row["trained_tokens"]]
        for key, row in list(report["sources"].items()) + list(report["kinds"].items())]
widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
for row in [header] + rows:
    print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))))
miss = abs(achieved[eta_unit] - eta)
print(f"eta counted in {eta_unit}{' (trained = assistant tokens)' if eta_unit == 'tokens' else ''}: "
      f"target {eta:.4f}, achieved {achieved[eta_unit]:.4f} "
      f"(agent share in the other unit: {achieved['tokens' if eta_unit == 'samples' else 'samples']:.4f})")
if miss > 0.01:
    print(f"warning: the achieved eta misses the target by {miss:.4f}: with so few samples one record moves "
          f"the share that much; raise --total")
print(f"train: {len(train)} records -> {os.path.join(out_dir, 'train.jsonl')}; val: {len(val)} records "
      f"-> {os.path.join(out_dir, 'val.jsonl')}; report: {os.path.join(out_dir, 'mix_report.json')}")
