"""Multiple-choice question sets (MMLU and the like) as a one-turn environment: the question and
lettered choices, one reply, accuracy of the answer letter.

Input: Hugging Face-style records, JSONL or a JSON array: `question`, `choices` (list of
strings), `answer` (the index of the right choice, its letter, or its text), optional `subject`
and `id`. Few-shot examples are passed in by the caller (05_eval.py takes the first k records of
the file and does not score them).
"""
import os
import re
import string

from agentune.envs.base import Env, Step, Task
from agentune.records import DataError, read_records

LETTERS = string.ascii_uppercase
# the letter itself is matched case-sensitively: "the answer is a dog" names no choice
MARKED = re.compile(r"(?i:answer)(?: is)?\s*[:\-]?\s*\(?([A-Z])(?![A-Za-z])")
LEADING = re.compile(r"^\s*\(?([A-Z])(?:[).:,]|\s*$|\s*\n)")


def answer_index(record, where):
    choices, answer = record["choices"], record["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        return answer
    if isinstance(answer, str):
        text = answer.strip()
        if len(text) == 1 and text.upper() in LETTERS[:len(choices)]:
            return LETTERS.index(text.upper())
        if text.isdigit() and int(text) < len(choices):
            return int(text)
        if text in choices:
            return choices.index(text)
    raise DataError(where, f"answer {answer!r} is neither an index, a letter nor the text of one "
                           f"of the {len(choices)} choices", "fix the record's 'answer'")


def format_question(record):
    subject = record.get("subject")
    about = f" about {subject.replace('_', ' ')}" if subject else ""
    lines = [f"The following is a multiple choice question{about}. Answer with the letter of the "
             f"correct choice.", "", record["question"].strip()]
    lines += [f"{LETTERS[i]}. {str(choice).strip()}" for i, choice in enumerate(record["choices"])]
    return "\n".join(lines)


class MCEnv(Env):
    name = "mc"
    max_turns = 1
    concurrency = "threads"

    def __init__(self, examples=()):
        self.examples = list(examples)  # records {question, choices, answer (index)}
        self.task = None

    @classmethod
    def load_tasks(cls, path=None, split=None):
        if not path:
            raise SystemExit("a multiple-choice task needs its file: --mc_files=\"{'mmlu': 'path/test.jsonl'}\"")
        name = os.path.splitext(os.path.basename(path))[0]
        tasks = []
        for i, (where, record) in enumerate(read_records(path)):
            if not isinstance(record.get("question"), str) or not isinstance(record.get("choices"), list) \
                    or not 2 <= len(record["choices"]) <= len(LETTERS) or "answer" not in record:
                raise DataError(where, "a multiple-choice record needs 'question' (text), 'choices' "
                                       "(a list of 2-26 strings) and 'answer'",
                                "convert the file to that Hugging Face-style layout")
            data = {"question": record["question"], "choices": record["choices"],
                    "answer": answer_index(record, where), "subject": record.get("subject")}
            tasks.append(Task(id=str(record.get("id", f"{name}-{i}")), prompt=record["question"], data=data))
        return tasks

    def reset(self, task):
        self.task = task
        messages = []
        for example in self.examples:
            messages += [{"role": "user", "content": format_question(example)},
                         {"role": "assistant", "content": f"Answer: {LETTERS[example['answer']]}"}]
        messages.append({"role": "user", "content": format_question(task.data)})
        return messages

    @classmethod
    def parse_action(cls, reply):
        """('answer', letter) from 'Answer: B' / 'the answer is (B)', or a reply opening with it."""
        match = MARKED.search(reply) or LEADING.match(reply)
        return ("answer", match.group(1).upper()) if match else None

    def step(self, reply):
        choices = self.task.data["choices"]
        parsed = self.parse_action(reply)
        if parsed is None:  # a reply that is exactly one choice's text answers too
            texts = [str(c).strip().lower() for c in choices]
            if reply.strip().lower() in texts:
                parsed = ("answer", LETTERS[texts.index(reply.strip().lower())])
        if parsed is None:
            return Step("", done=True, finish="invalid_format",
                        info={"valid_format": False, "valid_action": False, "action": ""})
        letter = parsed[1]
        valid = LETTERS.index(letter) < len(choices)
        correct = valid and LETTERS.index(letter) == self.task.data["answer"]
        return Step("", done=True, reward=float(correct), success=correct, finish="answered",
                    info={"valid_format": True, "valid_action": valid, "action": letter})

    def expert_reply(self):
        return f"Answer: {LETTERS[self.task.data['answer']]}"
