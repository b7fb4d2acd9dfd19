"""Digital Card Game: real games of AgentBench's engine and referee (built by
scripts/setup.d/75-card_game.sh), the LLM seat played through our loop by rule-based baseline 2
(the expert) and by a player that never gives a valid move."""
from agentune.envs.dcg_env import NO_GUESS, SPLITS, DCGEnv


def play(env, task, reply_fn):
    messages = env.reset(task)
    steps = []
    while True:
        steps.append(env.step(reply_fn(env)))
        if steps[-1].done:
            return messages, steps


def test_splits():
    assert {s: len(DCGEnv.load_tasks(split=s)) for s in SPLITS} == {"dev": 12, "std": 20, "ext": 200}
    ids = [t.id for t in DCGEnv.load_tasks(split="dev")]
    assert ids[0] == "baseline1-seat0-0" and ids[-1] == "baseline2-seat1-2"


def test_expert_and_invalid_player():
    env = DCGEnv()
    try:
        tasks = {t.id: t for t in DCGEnv.load_tasks(split="dev")}
        # baseline 2's moves in the LLM's seat (seat 1: the first call is the guess) are taken (its
        # pass when it has no guess is not a move: the player retries, then passes) and beat
        # baseline 1. The engine draws its dice from std::random_device (unseeded), so a single game
        # is lost now and then (5 of 40 here): of 5 games, one must be won (fails ~1 in 30,000).
        rewards = []
        for _ in range(5):
            messages, steps = play(env, tasks["baseline1-seat1-0"], lambda e: e.expert_reply())
            assert all(step.info["valid_action"] for step in steps if step.info["action"] != NO_GUESS)
            assert steps[-1].done and steps[-1].success == (steps[-1].reward == 1.0)
            rewards.append(steps[-1].reward)
            if steps[-1].success:
                break
        assert rewards[-1] == 1.0, f"the expert lost {len(rewards)} games in a row against baseline 1"
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[0]["content"].startswith("This is a two-player battle game with four pet fish")
        assert messages[2]["content"].endswith("Please output your guess.")
        rules_again = [s for s in steps if "Please Output your next action." in s.observation]
        assert rules_again[0].observation.startswith("This is a two-player battle game")  # action rules, once
        assert not rules_again[1].observation.startswith("This is")
        # a player without a valid move: 5 tries at the first guess (then a pass), 5 at the first
        # action, after which AgentBench's player gives up and loses the game
        messages, steps = play(env, tasks["baseline1-seat0-0"], lambda e: "I attack!")
        assert len(steps) == 10 and steps[-1].done and steps[-1].reward == 0.0
        assert not any(s.info["valid_action"] for s in steps[:-1])
    finally:
        env.close()
