"""HotpotQA offline ReAct env: the harness's scoring (EM, F1), the offline wiki's Search/Lookup,
action parsing, and the expert over all 300 questions."""
import pytest

from agentune.envs.hotpotqa_env import (INVALID_ACTION, HotpotQAEnv, OfflineWiki, exact_match, f1_score,
                                        normalize_answer)

CONTEXT = [
    ["Milhouse Van Houten", ["Milhouse Mussolini Van Houten is a character in The Simpsons.",
                             " Milhouse was named after U.S. president Richard Nixon.",
                             " Milhouse is named after Nixon's middle name."]],
    ["Richard Nixon", ["Richard Milhous Nixon was the 37th president of the United States."]],
    ["The Simpsons (season 1)", ["The first season of The Simpsons aired in 1989."]],
]


def test_answer_scoring():
    assert normalize_answer("The  Richard Nixon!") == "richard nixon"
    assert exact_match("richard nixon.", "Richard Nixon") and not exact_match("Nixon", "Richard Nixon")
    assert f1_score("Nixon", "Richard Nixon") == pytest.approx(2 / 3)
    assert f1_score("yes", "no") == 0.0 and f1_score("no", "no") == 1.0
    assert f1_score("yes indeed", "yes") == 0.0  # yes/no answers must match exactly
    assert f1_score("", "Richard Nixon") == 0.0


def test_offline_wiki():
    wiki = OfflineWiki(CONTEXT)
    assert wiki.lookup("named").startswith("The last page Searched was not found")
    page = wiki.search("milhouse van houten")  # titles match case-insensitively
    assert page.startswith("Milhouse Mussolini") and "Richard Nixon." in page
    assert wiki.lookup("Named After") == "(Result 1 / 2) Milhouse was named after U.S. president Richard Nixon."
    assert wiki.lookup("named after") == "(Result 2 / 2) Milhouse is named after Nixon's middle name."
    assert wiki.lookup("named after") == "No More Results"
    assert wiki.lookup("zebra") == "No Results"
    assert wiki.search("Simpsons season 1").startswith("The first season")   # punctuation ignored
    assert wiki.search("37th president").startswith("Richard Milhous")      # best-matching paragraph
    assert wiki.search("Zebra crossing") == ("Could not find [Zebra crossing]. Similar: "
                                             "['Milhouse Van Houten', 'Richard Nixon', 'The Simpsons (season 1)']")
    assert wiki.lookup("x").startswith("The last page Searched was not found")


def test_parse_action():
    parse = HotpotQAEnv.parse_action
    assert parse("Thought 1: go.\nAction 1: Search[Milhouse]") == ("Search", "Milhouse")
    assert parse("Action: Finish[a [b] c].") == ("Finish", "a [b] c")
    assert parse("Thought: x\nAction 2: Lookup[named after]\nObservation 2: ...\nAction 3: Finish[y]") == \
        ("Lookup", "named after")  # the first action only, as the harness cuts at the newline
    assert parse("Lookup[named after]") == ("Lookup", "named after")  # a bare action line
    assert parse("I think the answer is Nixon.") is None
    assert parse("Action 1: answer is Nixon") is None


def test_episode():
    tasks = HotpotQAEnv.load_tasks()
    assert len(tasks) == 300 and [len(HotpotQAEnv.load_tasks(split=s)) for s in ("easy", "medium", "hard")] == [100] * 3
    task = tasks[0]  # Badr Hari
    env = HotpotQAEnv()
    messages = env.reset(task)
    assert len(messages) == 1 and messages[0]["content"].endswith("Question: " + task.prompt)
    assert "(END OF EXAMPLES)" in messages[0]["content"] and "Action 3: Finish[Richard Nixon]" in messages[0]["content"]
    step = env.step("Thought 1: Search him.\nAction 1: Search[Badr Hari]")
    assert step.observation.startswith("Observation 1: Badr Hari") and not step.done
    step = env.step("I am not sure.")  # the harness answers and goes on
    assert step.observation == "Observation 2: " + INVALID_ACTION and step.info["valid_format"] is False
    step = env.step("Action 3: Answer[Badr Hari]")
    assert step.info["valid_format"] and not step.info["valid_action"] and not step.done
    step = env.step("Thought 4: done.\nAction 4: Finish[Hari]")  # partial credit: F1, not EM
    assert step.done and step.reward == pytest.approx(2 / 3) and not step.success and step.finish == "answered"
    env.reset(task)
    for turn in range(1, 11):
        step = env.step(f"Action {turn}: Lookup[kick]")
    assert step.done and step.finish == "max_turns" and step.reward == 0.0


def test_expert_solves_all():
    env = HotpotQAEnv()
    rewards = []
    for task in HotpotQAEnv.load_tasks():
        env.reset(task)
        replies = []
        while True:
            replies.append(env.expert_reply())
            step = env.step(replies[-1])
            if step.done:
                break
        assert [r.split("Action")[1].split("[")[0] for r in replies[:-1]] == [f" {i + 1}: Search" for i in range(len(replies) - 1)]
        rewards.append(step.reward)
    assert sum(rewards) / len(rewards) == 1.0
