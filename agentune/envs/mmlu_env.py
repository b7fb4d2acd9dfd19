"""MMLU (57 subjects) 5-shot, prompted as AgentTuning's harness does (eval_general/eval_mmlu_hf.py,
from Qwen's evaluate_mmlu.py): a system message naming the subject, the subject's five dev
questions as user turns answered "Answer: X", then the test question; accuracy overall, per
subject and per category.

One difference: the harness reads the next-token probabilities of " A".." D" after "Answer: " and
takes the largest, so it always answers. Our agents generate text (also through OpenAI-compatible
endpoints, which give no such scores), so the letter is read from the reply as for any
multiple-choice set (mc_env.MCEnv: "Answer: B", "The answer is (B)", a reply opening with the
letter); a reply without one counts as wrong (invalid_format).

Data: DATA_ROOT/mmlu/mmlu_{test,dev}.jsonl ({subject, question, choices[4], answer: A-D}) and
subject_categories.json (subject -> category: STEM, humanities, social sciences, other).
"""
import json
import os

from agentune.envs.mc_env import LETTERS, MCEnv
from agentune.paths import data_path

SYSTEM = ("The following is a multiple-choice question about {subject}. Please choose the most "
          "suitable one among A, B, C and D as the answer to this question.")


def format_question(record):
    return f"Question: {record['question']}\n" + "\n".join(
        f"{LETTERS[i]}. {choice}" for i, choice in enumerate(record["choices"]))


def categories(path=None):
    """{subject: category} from subject_categories.json."""
    with open(path or data_path("mmlu", "subject_categories.json"), encoding="utf-8") as f:
        return {subject: v["category"] for subject, v in json.load(f).items()}


class MMLUEnv(MCEnv):
    name = "mmlu"
    max_reply_tokens = 32   # the harness reads one token; room for "Answer: X" and a few words
    test_split = "test"

    def __init__(self, shots=5, dev_path=None):
        super().__init__()
        self.shots = {}  # subject -> its first `shots` dev records
        for task in MCEnv.load_tasks(dev_path or data_path("mmlu", "mmlu_dev.jsonl")):
            examples = self.shots.setdefault(task.data["subject"], [])
            if len(examples) < shots:
                examples.append(task.data)

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """The test split (default) or dev; ids are <subject>-<n>, n counting within the subject."""
        path = path or data_path("mmlu", f"mmlu_{split or 'test'}.jsonl")
        tasks, seen = MCEnv.load_tasks(path), {}
        for task in tasks:
            subject = task.data["subject"] or os.path.splitext(os.path.basename(path))[0]
            task.data["subject"] = subject
            task.id = f"{subject}-{seen.setdefault(subject, 0)}"
            seen[subject] += 1
        return tasks

    def reset(self, task):
        self.task = task
        subject = task.data["subject"]
        messages = [{"role": "system", "content": SYSTEM.format(subject=subject.replace("_", " "))}]
        for example in self.shots.get(subject, []):
            messages += [{"role": "user", "content": format_question(example)},
                         {"role": "assistant", "content": f"Answer: {LETTERS[example['answer']]}"}]
        messages.append({"role": "user", "content": format_question(task.data)})
        return messages

    @staticmethod
    def breakdown(records):
        """Accuracy (0-100) per subject and per category of scored episodes."""
        category = categories()
        by = {"subjects": {}, "categories": {}}
        for r in records:
            subject = r["task_id"].rsplit("-", 1)[0]
            for kind, key in (("subjects", subject), ("categories", category.get(subject, "unknown"))):
                by[kind].setdefault(key, []).append(float(r.get("reward") or 0.0))
        return {kind: {k: round(100.0 * sum(v) / len(v), 2) for k, v in sorted(groups.items())}
                for kind, groups in by.items()}
