"""The common environment interface used by 01_collect.py and 05_eval.py.

Life of an episode (driven by agentune/rollout.py):

    env = SomeEnv(**settings)                 # one instance per worker, reusable across episodes
    tasks = SomeEnv.load_tasks(path, split)   # list[Task]
    messages = env.reset(task)                # the conversation prefix the agent sees (AgentBench
                                              # prompt: instructions, one-shot example, the task)
    while True:
        reply = agent.reply(messages, env)    # assistant text: thought + one action
        messages.append({"role": "assistant", "content": reply})
        step = env.step(reply)                # parse -> act -> observe
        if step.done: break
        messages.append({"role": "user", "content": step.observation})
    env.close()                               # always, also after errors (workers call it once)

The environment, never the agent, decides reward and success. ``env.expert_reply()`` returns the
next assistant message of the task's reference solution from the current state (in the same
thought/action format), which the expert agent replays through the real environment.
"""
from dataclasses import dataclass, field


class NoReference(Exception):
    """The task ships no reference solution, so the expert cannot play it (e.g. an OS dev task
    without an `example`): the episode ends as `no_reference`, which says nothing about the
    agent, the env or an endpoint, and is not retried. Raised by expert_reply()."""


class TaskError(Exception):
    """The task itself is broken (e.g. a DBBench table row with the wrong number of values): the
    episode ends as `task_error`, is scored 0 and listed with the task's file:line, and the rest
    of the set runs. Raised by reset()."""


@dataclass
class Task:
    id: str                       # unique within the env, stable across runs (used for resume)
    prompt: str                   # the task text (also used for decontamination)
    data: dict = field(default_factory=dict)  # whatever the env needs to run and check it


@dataclass
class Step:
    observation: str              # what the agent sees next (a user turn), "" when done
    done: bool = False
    reward: float = 0.0           # task score in [0, 1] (sciworld: score/100); final when done
    success: bool = False
    # when done: answered | max_turns | invalid_format | context_limit | env_error | llm_error
    finish: str | None = None
    # per-step facts for error analysis: valid_format (bool), valid_action (bool), action (str)
    info: dict = field(default_factory=dict)


class Env:
    name = "base"
    max_turns = 8                 # rounds of agent replies before the episode ends as max_turns
    # threads: fine for in-process or subprocess-backed envs; processes: for envs that hold the
    # GIL or are not thread safe (the runner starts one process per worker)
    concurrency = "threads"
    # the source benchmark's limit on new tokens per agent reply (AgentBench: 128), None: the
    # agent's own max_tokens
    max_reply_tokens = None
    # the split 05_eval.py evaluates on by default; 01_collect.py refuses its tasks (None: none)
    test_split = None

    @classmethod
    def task_key(cls, task):
        """What makes two tasks the same task (for keeping collection and evaluation disjoint)."""
        return task.prompt

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """Tasks from a file or dir (default: the public data under agentune.paths.DATA_ROOT)."""
        raise NotImplementedError

    def reset(self, task: Task) -> list[dict]:
        raise NotImplementedError

    def step(self, reply: str) -> Step:
        raise NotImplementedError

    def score_unfinished(self):
        """(reward, success) of an episode the runner cut short (turn limit or context limit),
        judged as the source benchmark judges such an episode (OS: the checks run with the answer
        "None"; ScienceWorld: the score reached so far); None: it scores 0."""
        return None

    def expert_reply(self) -> str:
        raise NotImplementedError(f"{self.name} has no expert")

    @classmethod
    def parse_action(cls, reply: str):
        """(action, argument) of a reply, or None when it is not a valid action of this env."""
        raise NotImplementedError

    def close(self):
        pass
