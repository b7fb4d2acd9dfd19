"""HotpotQA as AgentTuning evaluated it (eval_heldout/hotpotQA, adopted from Salesforce BOLAA):
a ReAct agent answers multi-hop questions with Search[entity], Lookup[keyword] and
Finish[answer], up to 10 steps, scored by F1 against the gold answer (the harness's reward;
exact match is recorded as success).

Offline: the paper searched live Wikipedia through langchain's DocstoreExplorer. Here the
"Wikipedia" of a question is its own distractor paragraphs (10 for 297 of the 300 questions:
the 2 gold paragraphs and 8 retrieved distractors, each the first paragraph of its article):
- Search[x]: the paragraph whose title is x (case-insensitive, then ignoring punctuation and
  articles), else the paragraph that best matches x (title words first, then text words), else
  "Could not find [x]. Similar: [titles]" as langchain words it. The observation is the page's
  first paragraph, as DocstoreExplorer returns it.
- Lookup[k]: the next sentence of the last page found containing k, "(Result i / n) ...".
The data: DATA_ROOT/hotpotqa/agenttuning_hotpotqa_300.json, the 300 questions the paper used
(100 easy and 100 medium from train, 100 hard from dev), with `level`, `context`,
`supporting_facts`, `answer`.

Chat form: the harness completes one text prompt (instruction, two examples, "Question: ...",
then the growing "Thought n: / Action n: / Observation n:" scratchpad), asking the model twice
per step (thought, then action, each cut at a newline). Here the instruction, examples and
question are the first user turn, each assistant reply carries "Thought n: ...\nAction n: ...",
and each observation comes back as a user turn "Observation n: ...".
"""
import re
import string
from collections import Counter

from agentune.envs.base import Env, Step, Task
from agentune.paths import data_path
from agentune.records import DataError, read_jsonl

LEVELS = ("easy", "medium", "hard")

# the harness's REACT_INSTRUCTION (src/pre_prompt.py) and REACT_EXAMPLE (src/fewshots.py), word for
# word, up to "Question: {question}" (the scratchpad follows as chat turns)
INSTRUCTION = """This task involves solving a question-answering exercise through a series of interleaved Thought, Action, and Observation steps. Any thought before the action is allowed, and action can be one of the following three types:
(1) Search[entity]: This action involves searching for a specific entity on Wikipedia and returning the first paragraph of the entity's page if it exists. If the entity does not have a Wikipedia page, the assistant should suggest similar entities to search for.
(2) Lookup[keyword]: This action involves searching for the next sentence containing the specified keyword in the most recent passage successfully found by the Search action.
(3) Finish[answer]: This action concludes the task by providing the answer to the question.
You can take as many steps as necessary to answer the question. The key is to ensure that each step logically follows the previous one and contributes to the final answer. The task aims to emulate a reasoning process that yields accurate and comprehensive answers.
Here are some examples:
{examples}
(END OF EXAMPLES)
Question: {question}"""

EXAMPLES = """Question: Musician and satirist Allie Goertz wrote a song about the "The Simpsons" character Milhouse, who Matt Groening named after who?
Thought 1: The question simplifies to "The Simpsons" character Milhouse is named after who. I only need to search Milhouse and find who it is named after.
Action 1: Search[Milhouse]
Observation 1: Milhouse Mussolini Van Houten is a recurring character in the Fox animated television series The Simpsons voiced by Pamela Hayden and created by Matt Groening.
Thought 2: The paragraph does not tell who Milhouse is named after, maybe I can look up "named after".
Action 2: Lookup[named after]
Observation 2: (Result 1 / 1) Milhouse was named after U.S. president Richard Nixon, whose middle name was Milhous. 
Thought 3: Milhouse was named after U.S. president Richard Nixon, so the answer is Richard Nixon.
Action 3: Finish[Richard Nixon]

Question: Were Pavel Urysohn and Leonid Levin known for the same type of work?
Thought 1: I need to search Pavel Urysohn and Leonid Levin, find their types of work, then find if they are the same.
Action 1: Search[Pavel Urysohn]
Observation 1: Pavel Samuilovich Urysohn (February 3, 1898 \u2013 August 17, 1924) was a Soviet mathematician who is best known for his contributions in dimension theory.
Thought 2: Pavel Urysohn is a mathematician. I need to search Leonid Levin next and find its type of work.
Action 2: Search[Leonid Levin]
Observation 2: Leonid Anatolievich Levin is a Soviet-American mathematician and computer scientist. 
Thought 3: Leonid Levin is a mathematician and computer scientist. So Pavel Urysohn and Leonid Levin have the same type of work. 
Action 3: Finish[yes]
"""

# the harness's observations (src/agent_arch.py and langchain's DocstoreExplorer)
INVALID_ACTION = "Invalid Action. Valid Actions are Lookup[<topic>] Search[<topic>] and Finish[<answer>]."
NO_PAGE_FOR_LOOKUP = ("The last page Searched was not found, so you cannot Lookup a keyword in it. "
                      "Please try one of the similar pages given.")

ACTION_LINE = re.compile(r"^\s*Action(?:\s*\d+)?\s*:(.*)$", re.MULTILINE)
BARE_ACTION = re.compile(r"^\s*(Search|Lookup|Finish)\[.*\]", re.MULTILINE)
ACTION = re.compile(r"^(\w+)\[(.+)\]")
WORD = re.compile(r"\w+")
STOPWORDS = {"a", "an", "the", "of", "in", "on", "and", "or", "for", "to", "by", "at", "is", "was", "with"}


def normalize_answer(s):
    """SQuAD/HotpotQA normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def f1_score(prediction, gold):
    """The harness's F1 (HotpotQA's official one): yes/no/noanswer must match exactly."""
    pred, truth = normalize_answer(prediction), normalize_answer(gold)
    if (pred in ("yes", "no", "noanswer") or truth in ("yes", "no", "noanswer")) and pred != truth:
        return 0.0
    common = Counter(pred.split()) & Counter(truth.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(truth.split())
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction, gold):
    return normalize_answer(prediction) == normalize_answer(gold)


def content_words(text):
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS}


class OfflineWiki:
    """One question's paragraphs as a tiny Wikipedia with DocstoreExplorer's Search/Lookup."""

    def __init__(self, context):
        self.pages = [(title, [s.strip() for s in sentences if s.strip()]) for title, sentences in context]
        self.page = None              # sentences of the last page found
        self.lookup_key, self.lookup_index = "", 0

    def find(self, query):
        """The page for a query: by title, then by best match; None when nothing matches."""
        for same in (lambda t: t.casefold() == query.strip().casefold(),
                     lambda t: normalize_answer(t) == normalize_answer(query)):
            for title, sentences in self.pages:
                if same(title):
                    return sentences
        words = content_words(query)
        scored = [(len(words & content_words(title)), len(words & content_words(" ".join(sentences))), i)
                  for i, (title, sentences) in enumerate(self.pages)]
        best = max(scored, key=lambda s: (s[0], s[1], -s[2]), default=(0, 0, 0))
        return self.pages[best[2]][1] if best[0] or best[1] else None

    def search(self, query):
        sentences = self.find(query)
        if sentences is None:
            self.page = None
            return f"Could not find [{query}]. Similar: {[title for title, _ in self.pages]}"
        self.page, self.lookup_key, self.lookup_index = sentences, "", 0
        return " ".join(sentences)

    def lookup(self, keyword):
        if self.page is None:
            return NO_PAGE_FOR_LOOKUP
        if keyword.lower() != self.lookup_key:
            self.lookup_key, self.lookup_index = keyword.lower(), 0
        else:
            self.lookup_index += 1
        hits = [s for s in self.page if self.lookup_key in s.lower()]
        if not hits:
            return "No Results"
        if self.lookup_index >= len(hits):
            return "No More Results"
        return f"(Result {self.lookup_index + 1} / {len(hits)}) {hits[self.lookup_index]}"


class HotpotQAEnv(Env):
    name = "hotpotqa"
    max_turns = 10        # the harness's max_steps
    max_reply_tokens = 512  # the harness: 256 new tokens for the thought and 256 for the action
    test_split = "all"      # all 300 questions are the paper's test set
    concurrency = "threads"

    def __init__(self):
        self.task, self.wiki, self.turns = None, None, 0

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """The 300 questions (split None or "all"), or one level: easy, medium, hard."""
        if split not in (None, "all", *LEVELS):
            raise SystemExit(f"hotpotqa: unknown split {split!r}; use all, {', '.join(LEVELS)}")
        path = path or data_path("hotpotqa", "agenttuning_hotpotqa_300.json")
        tasks = []
        for i, (where, r) in enumerate(read_jsonl(path)):
            if not all(isinstance(r.get(k), str) for k in ("question", "answer")) \
                    or not isinstance(r.get("context"), list) or not r["context"]:
                raise DataError(where, "a HotpotQA record needs 'question', 'answer' and 'context' "
                                       "([[title, [sentences]], ...])", "use the distractor-setting files")
            level = r.get("level", "all")
            if split in LEVELS and level != split:
                continue
            titles = list(dict.fromkeys(title for title, _ in r.get("supporting_facts", [])))
            tasks.append(Task(id=f"{level}-{r.get('row', i)}", prompt=r["question"],
                              data={"answer": r["answer"], "context": r["context"], "supporting_titles": titles}))
        return tasks

    def reset(self, task):
        self.task, self.wiki, self.turns = task, OfflineWiki(task.data["context"]), 0
        self.searched = []    # the expert's progress through the supporting titles
        return [{"role": "user", "content": INSTRUCTION.format(examples=EXAMPLES, question=task.prompt)}]

    @classmethod
    def parse_action(cls, reply):
        """(type, argument) of the reply's first "Action n: Type[argument]" line (a bare
        "Search[x]" line counts too); None when there is none. The type is not checked here."""
        line = ACTION_LINE.search(reply) or BARE_ACTION.search(reply)
        if line is None:
            return None
        text = (line.group(1) if line.re is ACTION_LINE else line.group(0)).strip().strip(".").strip()
        match = ACTION.match(text)
        return (match.group(1), match.group(2)) if match else None

    def step(self, reply):
        self.turns += 1
        parsed = self.parse_action(reply)
        kind, argument = parsed or ("", "")
        info = {"valid_format": parsed is not None, "valid_action": kind in ("Search", "Lookup", "Finish"),
                "action": f"{kind}[{argument}]" if parsed else ""}
        if kind == "Finish":
            gold = self.task.data["answer"]
            correct = exact_match(argument, gold)
            info.update(answer=argument, em=correct)
            return Step("", done=True, reward=f1_score(argument, gold), success=correct,
                        finish="answered", info=info)
        if kind == "Search":
            observation = self.wiki.search(argument)
        elif kind == "Lookup":
            observation = self.wiki.lookup(argument)
        else:  # the harness answers an unknown or unparsable action and goes on
            observation = INVALID_ACTION
        if self.turns >= self.max_turns:
            return Step("", done=True, finish="max_turns", info=info)
        return Step(f"Observation {self.turns}: " + " ".join(observation.split()), info=info)

    def expert_reply(self):
        """Search each supporting paragraph's title, then Finish with the gold answer."""
        n = self.turns + 1
        todo = [t for t in self.task.data["supporting_titles"] if t not in self.searched]
        if todo:
            self.searched.append(todo[0])
            why = "I need to search" if not self.searched[:-1] else "Next I need to search"
            return f"Thought {n}: {why} {todo[0]}.\nAction {n}: Search[{todo[0]}]"
        answer = self.task.data["answer"]
        return f"Thought {n}: So the answer is {answer}.\nAction {n}: Finish[{answer}]"
