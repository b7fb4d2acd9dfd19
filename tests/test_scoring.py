"""The Overall score (hand-worked and the paper's own figures), task scores, the error analysis
on crafted trajectories, and the reports."""
import json

import pytest

from agentune import scoring


def test_overall_hand_worked():
    scores = {"a": 30.0, "b": 10.0, "c": 50.0, "d": 5.0, "e": 7.0}
    baselines = {"a": 20.0, "b": 40.0, "c": 25.0, "e": 0.0}   # d: none; e: zero -> both skipped
    groups = {"a": "held_in", "b": "held_in", "c": "general", "d": "held_out", "e": "held_out"}
    # held_in: (30/20 + 10/40) / 2 = (1.5 + 0.25) / 2 = 0.875; general: 50/25 = 2
    assert scoring.overall(scores, baselines, groups) == pytest.approx({"held_in": 0.875, "general": 2.0})


def test_paper_overall_reproduced():
    """Zeng et al. (2023) divide each task score by the five-model average (GPT-3.5, GPT-4,
    Llama-2-chat 7B/13B/70B) and average over all six tasks of a group: that gives their
    published AgentLM-70B Overall (held-in 2.55, held-out 1.40)."""
    baselines, groups = scoring.paper_baselines(), scoring.paper_groups()
    assert baselines["alfworld"] == pytest.approx((14.0 + 78.0 + 2.0 + 2.0 + 6.0) / 5)
    assert sum(g == "held_in" for g in groups.values()) == 6
    assert sum(g == "held_out" for g in groups.values()) == 6
    agentlm70 = scoring.overall(scoring.paper_scores("AgentLM-70B"), baselines, groups)
    assert round(agentlm70["held_in"], 2) == 2.55
    assert round(agentlm70["held_out"], 2) == 1.40
    # dividing by the five models' mean makes their Overall average exactly 1 in every group
    five = [scoring.overall(scoring.paper_scores(m), baselines, groups) for m in scoring.BASELINE_MODELS]
    for g in scoring.GROUPS:
        assert sum(o[g] for o in five) / 5 == pytest.approx(1.0, abs=1e-3)


def test_task_score():
    records = [{"reward": 1.0}, {"reward": 0.0}, {"reward": 0.5}, {"reward": None}]
    assert scoring.task_score(records) == pytest.approx(37.5)
    assert scoring.task_score([]) is None


def episode(actions, finish="answered", success=False, replies=None, valid_format=True,
            valid_action=True, prompt_example=""):
    """A record as rollout writes it; the prompt holds an example assistant turn (not the agent's)."""
    replies = replies or [f"Think.\nAct: {a}" for a in actions]
    messages = [{"role": "user", "content": "instructions"},
                {"role": "assistant", "content": prompt_example},  # one-shot example, not the agent
                {"role": "user", "content": "task"}]
    steps = []
    for reply, action in zip(replies, actions):
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "obs"}]
        steps.append({"valid_format": valid_format, "valid_action": valid_action, "action": action})
    return {"messages": messages, "steps": steps, "finish": finish, "success": success,
            "reward": float(success), "turns": len(steps)}


def crashed_episode():
    """The env raised on the agent's 2nd reply: two replies (the 1st empty), one step."""
    record = episode(["ls"], finish="env_error", replies=[""])
    record["messages"].append({"role": "assistant", "content": "Act: rm -rf /"})
    record["turns"] = 2
    return record


def test_ratio_interval():
    # a per-token mean over items: item 3 weighs 10 tokens, so the ratio is not a mean of means
    sums, counts = [1.0, 2.0, 30.0, 1.5], [1, 1, 10, 1]
    low, high = scoring.ratio_interval(sums, counts)
    assert low < sum(sums) / sum(counts) < high and 1.0 <= low and high <= 3.0
    # paired: a constant per-token shift on every item is the difference with no spread at all
    shifted = [s - 0.5 * c for s, c in zip(sums, counts)]
    low, high = scoring.ratio_interval(shifted, counts, baseline=(sums, counts))
    assert low == pytest.approx(-0.5) and high == pytest.approx(-0.5)
    assert scoring.ratio_interval(sums, counts, seed=7) == scoring.ratio_interval(sums, counts, seed=7)


def test_error_analysis_on_crafted_trajectories():
    cases = {
        "clean": (episode(["ls", "cat a", "answer 3"], success=True), set()),
        "short": (episode(["ls", "ls", "ls", "ls"], finish="max_turns"), {"short_repetition", "turn_limit"}),
        "cycle": (episode(["go north", "go south"] * 3), {"long_repetition"}),
        "often": (episode(["look", "go 1", "look", "go 2", "look", "go 3", "look", "go 4", "look"]),
                  {"long_repetition"}),
        "format": (episode(["", ""], finish="invalid_format", valid_format=False, replies=["hm", "hmm"]),
                   {"invalid_format"}),
        "action": (episode(["fly"], valid_action=False), {"invalid_action"}),
        "empty": (episode(["x"], replies=["   "]), {"refused_or_empty"}),
        "refusal": (episode(["x"], replies=["I'm sorry, but I can't help with that."]), {"refused_or_empty"}),
        "not_refusal": (episode(["x"], replies=["Thought: I cannot see the file yet.\nAct: ls"]), set()),
        "context": (episode([], finish="context_limit"), {"context_limit"}),
        "env_error": (episode(["ls"], finish="env_error"), {"env_error"}),
        "crash": (crashed_episode(), {"env_error", "refused_or_empty"}),
    }
    for name, (record, expected) in cases.items():
        assert scoring.episode_errors(record) == expected, name
    counts = scoring.error_analysis([record for record, _ in cases.values()])
    assert counts["long_repetition"] == 2 and counts["refused_or_empty"] == 3
    assert counts["turn_limit"] == 1 and counts["short_repetition"] == 1
    assert counts["failed"] == len(cases) - 1
    assert set(counts) == set(scoring.ERROR_KINDS) | {"failed"}


def test_reports(tmp_path):
    run = {"label": "mine", "overall": {"held_in": 0.5, "general": 1.0},
           "tasks": {"db": {"score": 11.92, "n": 2, "group": "held_in", "errors": {"turn_limit": 1}},
                     "gsm8k": {"score": 52.82, "n": 4, "group": "general", "errors": {}},
                     "mytask": {"score": 10.0, "n": 1, "group": "general", "errors": {}}}}
    path = tmp_path / "other" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"tasks": {"db": {"score": 23.84, "n": 2, "group": "held_in", "errors": {}}}}))
    other = scoring.load_results(str(path))
    assert other["label"] == "other"  # unnamed runs take their directory's name
    baselines = {**scoring.paper_baselines(), "mytask": 5.0}
    table = scoring.markdown_table([run, other], baselines)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()[2:]}
    # columns: group, baseline, mine, other, then the paper's eight models
    assert rows["db"][:4] == ["held_in", "11.9", "11.9", "23.8"]
    assert rows["db"][-1] == "37.7"                       # AgentLM-70B's DB score
    assert rows["mytask"][4:] == [""] * 8                 # the paper has no such task
    assert rows["**Overall held_in**"][2:4] == ["1.00", "2.00"]
    # mine: gsm8k 52.82 / 52.82 and mytask 10 / 5 -> (1 + 2) / 2
    assert rows["**Overall general**"][2] == "1.50"
    assert rows["Overall held_in, all paper tasks"][-1] == "2.55"
    scoring.write_report(str(tmp_path / "results.md"), [run, other], baselines)
    assert "turn_limit" in (tmp_path / "results.md").read_text()
    scoring.write_chart(str(tmp_path / "results.png"), [run, other], baselines)
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sciworld_score_averages_per_task_type_first():
    from agentune.scoring import task_score
    records = [{"env": "sciworld", "task_id": "boil#1", "reward": 1.0},
               {"env": "sciworld", "task_id": "boil#2", "reward": 1.0},
               {"env": "sciworld", "task_id": "boil#3", "reward": 1.0},
               {"env": "sciworld", "task_id": "melt#1", "reward": 0.0}]
    assert task_score(records) == 50.0  # (100 + 0) / 2, not 75 over episodes
    assert task_score([dict(r, env="miniwob") for r in records]) == 75.0
