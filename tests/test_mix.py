"""03_mix.py on hand-written agent data (AgentInstruct conversations + 02-style training records)
and the real general data in ../shared/data/general: eta is hit in both counting modes (checked by
recounting the written records), val is held out of train, a seed fixes the output, and the
format adapters turn bad input into file:line errors."""
import json
import os

import pytest

from agentune.chat import encode
from agentune.paths import data_path
from agentune.records import read_jsonl, to_messages
from test_filter import FIXTURES, read_lines, run_stage

AGENT = f"{FIXTURES}/agentinstruct_*.json,{FIXTURES}/agent_records.jsonl"
GENERAL_SLICE = {"alpaca_en_demo.json": 150, "glaive_toolcall_en_demo.json": 50}  # records of each, for speed


@pytest.fixture(scope="module")
def general(tmp_path_factory):
    """The first records of the real general data files, in the same formats (JSON arrays)."""
    out = tmp_path_factory.mktemp("general")
    for name, n in GENERAL_SLICE.items():
        with open(data_path("general", name)) as f:
            (out / name).write_text(json.dumps(json.load(f)[:n]))
    return f"{out}/*.json"


def mix(out_dir, general, *args):
    run_stage("03_mix.py", f"--agent_data={AGENT}", f"--general_data={general}", f"--out_dir={out_dir}", *args)
    with open(os.path.join(out_dir, "mix_report.json")) as f:
        report = json.load(f)
    return read_lines(os.path.join(out_dir, "train.jsonl")), read_lines(os.path.join(out_dir, "val.jsonl")), report


@pytest.fixture(scope="module")
def samples_mix(tmp_path_factory, general):
    out = tmp_path_factory.mktemp("mix")
    return out, mix(str(out), general, "--eta=0.2", "--eta_unit=samples", "--total=1000")


def test_eta_in_samples(samples_mix):
    _, (train, val, report) = samples_mix
    assert len(train) == 1000
    agent = sum(r["source"].startswith("agent:") for r in train)
    assert abs(agent / len(train) - 0.2) <= 0.01
    # 4 unique agent records left after the val slice, so they are upsampled ~50 times
    assert report["kinds"]["agent"]["epochs"] > 40 and 3 < report["kinds"]["general"]["epochs"] < 5
    assert {r["source"] for r in train} == {"agent:agentinstruct_os", "agent:db", "general:alpaca_en_demo",
                                            "general:glaive_toolcall_en_demo"}


def test_val_is_held_out_of_both_kinds(samples_mix):
    _, (train, val, _) = samples_mix
    kinds = {r["source"].split(":")[0] for r in val}
    assert kinds == {"agent", "general"}
    train_keys = {(r["source"], r["id"]) for r in train}
    assert not any((r["source"], r["id"]) in train_keys for r in val)


def test_eta_in_trained_tokens(tmp_path, general, base_tokenizer):
    train, _, report = mix(str(tmp_path), general, "--eta=0.3", "--eta_unit=tokens", "--total=1500")
    trained, counted = {"agent": 0, "general": 0}, {}
    for r in train:  # recount the written records, with the loss mask 04_train.py uses
        key = (r["source"], r["id"])
        if key not in counted:
            counted[key] = sum(encode(base_tokenizer, r["messages"])[1])
        trained[r["source"].split(":")[0]] += counted[key]
    share = trained["agent"] / (trained["agent"] + trained["general"])
    assert abs(share - 0.3) <= 0.01
    assert report["achieved"]["tokens"] == pytest.approx(share)


def test_deterministic_for_a_seed(samples_mix, general, tmp_path):
    first, _ = samples_mix
    again, other = tmp_path / "again", tmp_path / "other"
    mix(str(again), general, "--eta=0.2", "--eta_unit=samples", "--total=1000")
    mix(str(other), general, "--eta=0.2", "--eta_unit=samples", "--total=1000", "--seed=7")
    for name in ("train.jsonl", "val.jsonl"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
    assert (first / "train.jsonl").read_bytes() != (other / "train.jsonl").read_bytes()


def test_tool_calls_and_agentinstruct_loss(samples_mix):
    _, (train, _, _) = samples_mix
    glaive = next(r for r in train if r["source"] == "general:glaive_toolcall_en_demo"
                  and r["messages"][0]["role"] == "system")
    assert "You have access to the following functions" in glaive["messages"][0]["content"]
    assert '"parameters"' in glaive["messages"][0]["content"]
    os_record = next(r for r in train if r["source"] == "agent:agentinstruct_os")
    # AgentInstruct's "loss": false on the one-shot "OK." is kept; the agent's turns are trained
    assert [m["loss"] for m in os_record["messages"]] == [False, False, False, True, False, True]


BAD = [
    ({"prompt": "hi", "completion": "hello"}, "unknown record format"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "hello"}]}, "unknown speaker 'bot'"),
    ({"conversations": [{"from": "human", "value": "hi"}]}, "no assistant turn"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}], "tools": "[{"},
     "'tools' is not valid JSON"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]}, "turn 1 has no text"),
]


@pytest.mark.parametrize("record, message", BAD)
def test_adapters_name_file_and_line(tmp_path, record, message):
    path = tmp_path / "general.jsonl"
    good = {"instruction": "Say hi.", "input": "", "output": "Hi!"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    (where, first), (bad_where, bad) = list(read_jsonl(str(path)))
    assert [m["role"] for m in to_messages(first, where)] == ["user", "assistant"]
    with pytest.raises(SystemExit, match=rf"general.jsonl:2: .*{message}"):
        to_messages(bad, bad_where)


def test_stage_refuses_bad_general_data(tmp_path):
    path = tmp_path / "general.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi!"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(SystemExit, match=r"general.jsonl:2: unknown record format"):
        mix(str(tmp_path / "out"), str(path))


def test_seq_len_and_tokenizer_travel_from_02(tmp_path, general):
    """03 takes the seq_len and tokenizer 02 filtered with (its report.json next to the agent
    data) and records them, with the tokenizer it counted with, for 04."""
    agent_dir = tmp_path / "filtered"
    agent_dir.mkdir()
    (agent_dir / "agent.jsonl").write_text(open(f"{FIXTURES}/agent_records.jsonl").read())
    (agent_dir / "report.json").write_text(json.dumps({"settings": {"seq_len": 777, "model": ""}}))
    out = tmp_path / "mix"
    run_stage("03_mix.py", f"--agent_data={agent_dir / 'agent.jsonl'}", f"--general_data={general}",
              f"--out_dir={out}", "--eta=0.5")
    report = json.loads((out / "mix_report.json").read_text())
    assert report["seq_len"] == 777 and report["settings"]["seq_len"] == 777
    assert report["tokenizer"] and report["model"] == ""
