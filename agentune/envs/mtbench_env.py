"""MT-Bench: 80 two-turn questions (8 categories) answered by the model, each turn graded 1-10 by
a judge model with FastChat's single-answer grading (fastchat/llm_judge: gen_judgment.py
--mode single), as AgentTuning reports it.

- The model sees AgentTuning's system message (eval_general/eval_mt_bench_tgi.py), the first
  question, its own answer, then the second question.
- The judge, any OpenAI-compatible endpoint (judge_model, judge_base_url), gets FastChat's prompts
  from judge_prompts.jsonl: turn 1 with "single-v1" and turn 2 with "single-v1-multi-turn"; the
  reference-based "single-math-v1(-multi-turn)" with the GPT-4 reference answers for math,
  reasoning and coding. Temperature 0, up to 2048 tokens, as FastChat asks GPT-4.
- The rating is the judgment's "[[n]]" (else "[n]"); a judgment without one is dropped, as
  FastChat drops rating -1. The episode's reward is the mean of its ratings / 10; the task score
  (scoring.task_score) is the mean rating on the paper's 1-10 scale over the judged questions.
- With no judge the task is not run (05_eval.py says so); the model never judges itself.

Data: DATA_ROOT/mt_bench/question.jsonl, reference_answer/gpt-4.jsonl, judge_prompts.jsonl.
"""
import ast
import os
import re

from agentune.envs.base import Env, NoReference, Step, Task
from agentune.paths import data_path
from agentune.records import DataError, read_jsonl

SYSTEM = "You are a helpful, respectful and honest assistant."
NEED_REFERENCE = ("math", "reasoning", "coding")
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def extract_rating(judgment):
    """FastChat's: the first [[n]] (else [n]); None when there is none."""
    match = RATING.search(judgment) or RATING_BACKUP.search(judgment)
    return float(ast.literal_eval(match.group(1))) if match else None


def load_judge_prompts(path=None):
    prompts = {}
    for where, record in read_jsonl(path or data_path("mt_bench", "judge_prompts.jsonl")):
        prompts[record.get("name")] = record
    missing = [n for n in ("single-v1", "single-v1-multi-turn", "single-math-v1", "single-math-v1-multi-turn")
               if n not in prompts]
    if missing:
        raise DataError(path or "judge_prompts.jsonl", f"no judge prompt named {', '.join(missing)}",
                        "use FastChat's fastchat/llm_judge/data/judge_prompts.jsonl")
    return prompts


class MTBenchEnv(Env):
    name = "mtbench"
    max_turns = 2
    concurrency = "threads"

    def __init__(self, judge_model="", judge_base_url="", judge_max_tokens=2048, judge_prompts=None):
        from agentune.agents import make_agent
        if not judge_model:
            raise SystemExit("mtbench needs a judge: --judge_model (and --judge_base_url for a server "
                             "other than api.openai.com)")
        self.judge = make_agent("openai", model=judge_model, base_url=judge_base_url, temperature=0.0,
                                max_tokens=judge_max_tokens)
        self.prompts = load_judge_prompts(judge_prompts)
        self.task, self.answers = None, []

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """question.jsonl (path: that file; its references are read from reference_answer/gpt-4.jsonl
        next to it)."""
        path = path or data_path("mt_bench", "question.jsonl")
        references = {}
        reference_path = os.path.join(os.path.dirname(path), "reference_answer", "gpt-4.jsonl")
        if os.path.exists(reference_path):
            for _, r in read_jsonl(reference_path):
                references[r["question_id"]] = r["choices"][0]["turns"]
        tasks = []
        for where, r in read_jsonl(path):
            if not isinstance(r.get("turns"), list) or len(r["turns"]) != 2 or "question_id" not in r:
                raise DataError(where, "an MT-Bench question needs 'question_id', 'category' and two 'turns'",
                                "use FastChat's fastchat/llm_judge/data/mt_bench/question.jsonl")
            reference = references.get(r["question_id"])
            if r.get("category") in NEED_REFERENCE and reference is None:
                raise DataError(where, f"no reference answer for {r['category']} question {r['question_id']}",
                                f"put FastChat's reference answers in {reference_path}")
            tasks.append(Task(id=str(r["question_id"]), prompt=r["turns"][0],
                              data={"category": r.get("category"), "turns": r["turns"], "reference": reference}))
        return tasks

    def reset(self, task):
        self.task, self.answers = task, []
        self.judge.start_episode()
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task.data["turns"][0]}]

    def judge_turn(self, turn):
        """(rating or None, judgment) of the model's answer to turn 1 or 2."""
        reference = self.task.data["reference"] if self.task.data["category"] in NEED_REFERENCE else None
        name = ("single-math-v1" if reference else "single-v1") + ("-multi-turn" if turn == 2 else "")
        prompt = self.prompts[name]
        fields = {"question": self.task.data["turns"][0], "answer": self.answers[0],
                  "question_1": self.task.data["turns"][0], "question_2": self.task.data["turns"][1],
                  "answer_1": self.answers[0], "answer_2": self.answers[-1]}
        if reference:
            fields.update(ref_answer_1=reference[0], ref_answer_2=reference[1])
        messages = [{"role": "system", "content": prompt["system_prompt"]},
                    {"role": "user", "content": prompt["prompt_template"].format(**fields)}]
        judgment = self.judge.reply(messages).content
        return extract_rating(judgment), judgment

    def step(self, reply):
        self.answers.append(reply.strip())
        info = {"valid_format": True, "valid_action": True}
        if len(self.answers) == 1:
            return Step(self.task.data["turns"][1], info={**info, "action": ""})
        ratings, judgments = [], []
        for turn in (1, 2):
            rating, judgment = self.judge_turn(turn)
            judgments.append(judgment)
            if rating is not None:
                ratings.append(rating)
        if not ratings:  # an env_error: left out of the score, rerun on resume
            raise RuntimeError(f"the judge gave no [[rating]]: {judgments[-1][:200]!r}")
        info.update(action="ratings " + " ".join(f"{r:g}" for r in ratings), judgments=judgments)
        return Step("", done=True, reward=sum(ratings) / len(ratings) / 10.0, success=True,
                    finish="answered", info=info)

    def expert_reply(self):
        """The GPT-4 reference answer (math, reasoning and coding questions only)."""
        reference = self.task.data["reference"]
        if reference is None:
            raise NoReference(f"mtbench: no reference answer for {self.task.data['category']} questions")
        return reference[len(self.answers)]

    def close(self):
        self.judge.close()
