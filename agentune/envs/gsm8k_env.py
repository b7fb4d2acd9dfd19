"""GSM8K (grade-school math) as a one-turn environment: the question with few-shot worked
examples from the train split as prior chat turns, one reply, exact match of the final number.

Few-shot: the first `shots` train problems (fixed, so every run sees the same prompt). Default
5, the setting SmolLM2 reports GSM8K with: ~700 prompt tokens, short enough for a 135M model's
context and CPU evaluation; the paper's Llama-2 figures are 8-shot (--gsm8k_shots=8).
"""
import re

from agentune.envs.base import Env, Step, Task
from agentune.paths import data_path
from agentune.records import DataError, read_jsonl

INSTRUCTION = ("Solve the math word problem. Think step by step, then give the final answer "
               "on the last line as: The answer is <number>.")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# the phrase the prompt asks for ("the final answer is 15 gallons * 8" is still working)
ANSWER_MARKER = re.compile(r"(?:\bthe answer is|####)\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: 48/2 = <<48/2=24>>24


def parse_number(text):
    return float(text.replace(",", ""))


def load_problems(path):
    problems = []
    for where, record in read_jsonl(path):
        if "question" not in record or "####" not in record.get("answer", ""):
            raise DataError(where, "a GSM8K record needs 'question' and an 'answer' ending in '#### N'",
                            "use the files of openai/grade-school-math (data/gsm8k/*.jsonl)")
        target = record["answer"].rsplit("####", 1)[1].strip()
        problems.append((where, record["question"], record["answer"], target))
    return problems


def worked_solution(answer):
    """The reference answer as the model should write it: steps, then 'The answer is N.'"""
    steps, target = answer.rsplit("####", 1)
    return CALCULATOR.sub("", steps).strip() + f"\nThe answer is {target.strip()}."


class GSM8KEnv(Env):
    name = "gsm8k"
    max_turns = 1
    concurrency = "threads"

    def __init__(self, shots=5, train_path=None):
        train = load_problems(train_path or data_path("gsm8k", "train.jsonl"))[:shots]
        self.examples = [(question, worked_solution(answer)) for _, question, answer, _ in train]
        self.task = None

    @classmethod
    def load_tasks(cls, path=None, split=None):
        path = path or data_path("gsm8k", f"{split or 'test'}.jsonl")
        return [Task(id=f"{split or 'test'}-{i}", prompt=question, data={"answer": answer, "target": target})
                for i, (_, question, answer, target) in enumerate(load_problems(path))]

    def reset(self, task):
        self.task = task
        messages = []
        for question, solution in self.examples:
            messages += [{"role": "user", "content": f"Question: {question}"},
                         {"role": "assistant", "content": solution}]
        messages.append({"role": "user", "content": f"Question: {task.prompt}"})
        messages[0]["content"] = INSTRUCTION + "\n\n" + messages[0]["content"]
        return messages

    @classmethod
    def parse_action(cls, reply):
        """('answer', number text): the number after the first 'The answer is' (small models
        ramble on with new questions after it), else the last number of the reply."""
        marked = ANSWER_MARKER.search(reply)
        if marked:
            return "answer", marked.group(1)
        numbers = NUMBER.findall(reply)
        return ("answer", numbers[-1]) if numbers else None

    def step(self, reply):
        parsed = self.parse_action(reply)
        if parsed is None:
            return Step("", done=True, finish="invalid_format",
                        info={"valid_format": False, "valid_action": False, "action": ""})
        correct = abs(parse_number(parsed[1]) - parse_number(self.task.data["target"])) < 1e-6
        return Step("", done=True, reward=float(correct), success=correct, finish="answered",
                    info={"valid_format": True, "valid_action": True, "action": parsed[1]})

    def expert_reply(self):
        return worked_solution(self.task.data["answer"])
