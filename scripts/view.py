"""Read trajectory JSONL files (01_collect.py's data/raw, 05_eval.py's episodes, training records).

    python scripts/view.py data/raw/os.jsonl                 # terminal: one episode after another
    python scripts/view.py data/raw/os.jsonl --index=3       # just the 4th episode
    python scripts/view.py 'data/raw/*.jsonl' --html=out/trajectories.html   # one page, an episode per section
    python scripts/view.py data/raw/db.jsonl --only=failed   # failed | success | finish name
"""
import html
import os
import sys

from agentune.config import configure  # noqa: E402
from agentune.records import read_records  # noqa: E402

html_out = ""      # write one HTML page here instead of printing to the terminal
index = -1         # show only the episode at this position (after --only)
only = ""          # '' | success | failed | a finish reason (max_turns, invalid_format, ...)
width = 0          # terminal: cut each turn to this many characters (0 = whole turns)

paths = [a for a in sys.argv[1:] if not a.startswith("--")]
if not paths:
    sys.exit(__doc__)
configure(globals(), [a for a in sys.argv[1:] if a.startswith("--")], show=False)

episodes = []
for where, record in read_records(paths):
    if only == "success" and not record.get("success"):
        continue
    if only == "failed" and record.get("success"):
        continue
    if only not in ("", "success", "failed") and record.get("finish") != only:
        continue
    episodes.append((where, record))
if index >= 0:
    episodes = episodes[index:index + 1]


def header(where, r):
    agent = r.get("agent") or {}
    return (f"{r.get('id') or r.get('task_id') or where}  [{where}]\n"
            f"env {r.get('env', r.get('source', '?'))} · agent {agent.get('kind', '-')} {agent.get('model', '')} · "
            f"reward {r.get('reward', '-')} · success {r.get('success', '-')} · finish {r.get('finish', '-')} · "
            f"turns {r.get('turns', '-')}")


def turns(r):
    if "messages" in r:
        return [(m["role"], m.get("content") or "") for m in r["messages"]]
    return [(t.get("from", "?"), t.get("value") or "") for t in r.get("conversations", [])]


if html_out:
    colours = {"system": "#eee", "user": "#eef4ff", "human": "#eef4ff", "assistant": "#efffef", "gpt": "#efffef"}
    parts = ["<html><meta charset='utf-8'><title>trajectories</title><body style='font-family:sans-serif;max-width:1000px;margin:auto'>",
             f"<h1>{len(episodes)} episodes</h1>"]
    for n, (where, r) in enumerate(episodes):
        top = html.escape(header(where, r)).replace("\n", "<br>")
        parts.append(f"<section id='e{n}'><h2>#{n}</h2><p>{top}</p>")
        for role, content in turns(r):
            parts.append(f"<div style='background:{colours.get(role, '#fff')};padding:6px;margin:4px 0;border-radius:4px'>"
                         f"<b>{html.escape(role)}</b><pre style='white-space:pre-wrap'>{html.escape(content)}</pre></div>")
        parts.append("</section><hr>")
    os.makedirs(os.path.dirname(os.path.abspath(html_out)), exist_ok=True)
    with open(html_out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "</body></html>\n")
    print(f"{len(episodes)} episodes -> {html_out}")
else:
    for n, (where, r) in enumerate(episodes):
        print("=" * 100)
        print(f"#{n} " + header(where, r))
        for role, content in turns(r):
            text = content if not width or len(content) <= width else content[:width] + " …"
            print(f"--- {role}\n{text}")
    print(f"({len(episodes)} episodes)")
