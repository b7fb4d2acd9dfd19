"""MiniWoB++ (held-out): small web tasks in a real headless Chromium, driven through Selenium.

The agent reads the task's utterance and a text rendering of the page's DOM (one element a line:
ref id, tag, text, value) and answers "Thought: ... / Action: click(ref)", "type(ref, "text")" or
"select(ref, "option")". The page's own JavaScript decides the reward; success = raw reward > 0,
and the score is the success rate x 100, as in the paper.

TASKS is the subset of the MiniWoB++ tasks AgentTuning evaluated (its RCI-agent harness's
available_tasks.txt) that can be solved from the DOM text alone (no shapes, colours, canvas or
scrolling) and that we have a scripted solver for (SOLVERS, used by expert_reply() and the tests).
The 10-second episode timer of MiniWoB++ is disabled: an LLM needs longer than a human.
"""
import ast
import atexit
import json
import os
import pathlib
import re
import time

import miniwob
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

from agentune.envs.base import Env, Step, Task

HTML_DIR = pathlib.Path(miniwob.__file__).parent / "html" / "miniwob"
CHROME = os.environ.get("MINIWOB_CHROME_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MINIWOB_CHROMEDRIVER", "/usr/bin/chromedriver")
# headless in a sandbox-less container with a closed network: nothing may phone home
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--disable-extensions", "--window-size=500,500"]
# after an action, let the page's handlers and animations run (autocomplete waits 300 ms)
SETTLE_S = {"click": 0.15, "type": 0.4, "select": 0.15}
SEEDS = {"test": range(10), "train": range(1000, 1100)}   # episodes per task and split
TASKS = ["choose-list", "click-button", "click-button-sequence", "click-checkboxes",
         "click-checkboxes-large", "click-checkboxes-transfer", "click-collapsible",
         "click-collapsible-2", "click-dialog", "click-dialog-2", "click-link", "click-option",
         "click-tab", "click-tab-2", "click-test", "click-test-2", "click-widget", "enter-password",
         "enter-text", "enter-text-dynamic", "focus-text", "focus-text-2", "login-user",
         "navigate-tree", "simple-algebra", "use-autocomplete"]

INSTRUCTIONS = """You are a web agent. You will be given a task on a web page and the page's elements, one per line: [ref] tag "text" value=... Indentation shows nesting; quoted lines without a ref are plain text.
Each turn, think about what to do, then give exactly one action in this format:
Thought: <your reasoning>
Action: <the action>

The actions are:
click(ref): click the element with that ref
type(ref, "text"): replace the content of a text field with the text
select(ref, "option"): choose an option of a drop-down list

After each action you see the page again. The episode ends when the task is completed or failed."""
FORMAT_HINT = ('Invalid format. Answer with "Thought: <your reasoning>" and then one line '
               '"Action: click(ref)", "Action: type(ref, \\"text\\")" or "Action: select(ref, \\"option\\")".')
# the one-shot example: a real episode (login-user, seed 0) answered by its solver
EXAMPLE_TASK = Task(id="login-user#0", prompt="", data={"task_name": "login-user", "seed": 0})


class Browser:
    """One headless Chromium (via chromedriver). close() always ends it, and so does process exit."""

    def __init__(self):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROME
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.implicitly_wait(0)
        atexit.register(self.close)

    def close(self):
        if self.driver is not None:
            try:
                self.driver.quit()   # ends chromium and chromedriver
            finally:
                service = self.driver.service
                if service.process and service.process.poll() is None:
                    service.process.kill()
                self.driver = None
        atexit.unregister(self.close)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def start(self, task_name, seed):
        self.driver.get(f"file://{HTML_DIR}/{task_name}.html")
        self.js(f"core.EPISODE_MAX_TIME = 3600 * 1000; Math.seedrandom({seed!r}); core.startEpisodeReal();")
        for _ in range(40):
            if self.js("return WOB_TASK_READY;"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"MiniWoB task {task_name} did not load")

    def utterance(self):
        response = self.js("return core.getUtterance();")
        return response["utterance"] if isinstance(response, dict) else response

    def dom(self):
        """The page as a tree of dicts (ref, tag, text, value, classes, children); refs are valid
        for actions until the next call."""
        root = self.js("return core.getDOMInfo();")
        options = self.js("var o = {}; for (var ref in core.previousDOMInfo) { var e = core.previousDOMInfo[ref];"
                          " if (e instanceof HTMLSelectElement) o[ref] = [Array.from(e.options).map(x => x.text),"
                          " e.selectedIndex >= 0 ? e.options[e.selectedIndex].text : '']; } return o;")
        return parse_dom(root, options)

    def done(self):
        """(done, raw reward)"""
        return self.js("return [WOB_DONE_GLOBAL, WOB_RAW_REWARD_GLOBAL];")

    def click(self, ref):
        return self.js(f"return core.elementClick({ref});")

    def type(self, ref, text):
        result = self.js(f"var e = core.previousDOMInfo[{ref}]; if (!(e instanceof HTMLInputElement ||"
                         f" e instanceof HTMLTextAreaElement)) return 'not a text field'; e.value = '';"
                         f" return core.elementClick({ref});")
        if result is True:
            # real key events: some tasks (autocomplete) react to keystrokes, not to .value
            ActionChains(self.driver, duration=0).send_keys(text).perform()
        return result

    def select(self, ref, option):
        return self.js(f"var e = core.previousDOMInfo[{ref}];"
                       " if (!(e instanceof HTMLSelectElement)) return 'not a drop-down list';"
                       " var i = Array.from(e.options).findIndex(x => x.text === arguments[0]);"
                       " if (i < 0) return 'no such option'; e.selectedIndex = i;"
                       " e.dispatchEvent(new Event('change', {bubbles: true})); return true;", option)


def parse_dom(raw, select_options, parent=None):
    """Element tree from core.getDOMInfo(). Text nodes stay in order as children with tag "t"
    (and no ref we can act on); an element's text is its own or that of its text children."""
    node = {"ref": raw["ref"], "tag": raw["tag"].lower(), "text": raw.get("text") or "",
            "value": raw.get("value"), "classes": raw.get("classes") if isinstance(raw.get("classes"), str) else "",
            "id": raw.get("id", ""), "parent": parent, "children": []}
    if str(raw["ref"]) in select_options:
        node["options"], node["value"] = select_options[str(raw["ref"])]
    node["children"] = [parse_dom(child, select_options, node) for child in raw["children"]]
    if all(child["tag"] == "t" for child in node["children"]) and not node["text"]:
        node["text"] = " ".join(child["text"] for child in node["children"])
        node["children"] = []
    return node


def walk(node):
    yield node
    for child in node["children"]:
        yield from walk(child)


INTERACTIVE = ("button", "a", "input", "textarea", "select", "label")


def render(node, depth=0, lines=None):
    """One line per element that has text, a value or can be interacted with; plain text in
    quotes without a ref."""
    lines = [] if lines is None else lines
    tag = node["tag"]
    if tag == "t":
        lines.append("  " * depth + f'"{node["text"]}"')
        return lines
    shown = tag != "body" and (bool(node["text"]) or node["value"] is not None
                               or tag.startswith(INTERACTIVE) or "hitarea" in node["classes"])
    if shown:
        line = f"[{node['ref']}] {tag}"
        if node["text"]:
            line += f' "{node["text"]}"'
        if node.get("options"):
            line += " options=" + ", ".join(f'"{o}"' for o in node["options"])
        if isinstance(node["value"], bool):
            line += " checked" if node["value"] else " unchecked"
        elif node["value"] is not None:
            line += f" value={json.dumps(node['value'])}"
        if "hitarea" in node["classes"]:
            line += " (expand/collapse)"
        lines.append("  " * depth + line)
    for child in node["children"]:
        render(child, depth + 1 if shown else depth, lines)
    return lines


# -- scripted solvers: (utterance, root node, actions so far) -> next action ------------------

def act(name, *args):
    """The action as the agent writes it: click(5), type(7, "text")."""
    return f"{name}({', '.join(json.dumps(a, ensure_ascii=False) for a in args)})"


def click_first(nodes):
    return act("click", nodes[0]["ref"])


def quoted(utterance):
    return re.findall(r'"(.*?)"', utterance)


def label_text(node):
    """The text next to a checkbox/radio (its label's)."""
    label = node["parent"]
    return label["text"] or " ".join(c["text"] for c in label["children"] if c["tag"] == "t")


def find(root, tag=None, text=None, cls=None):
    return [n for n in walk(root) if (tag is None or n["tag"] == tag) and (text is None or n["text"] == text)
            and (cls is None or cls in n["classes"].split())]


def submit(root):
    buttons = [n for n in walk(root) if n["tag"] == "button" and n["text"].lower() in ("submit", "login")]
    return click_first(buttons)


def solve_checkboxes(utterance, root, done):
    listed = re.match(r"Select (.*) and click Submit", utterance).group(1)
    wanted = set() if listed == "nothing" else {w.strip() for w in listed.split(",")}
    for box in find(root, "input_checkbox") + find(root, "input_radio"):
        if (label_text(box) in wanted) != box["value"]:
            return act("click", box["ref"])
    return submit(root)


def solve_fields(values):
    """Fill text fields in page order with values, then submit."""
    def solver(utterance, root, done):
        fields = [n for n in walk(root) if n["tag"] in ("input_text", "input_password", "textarea")]
        for field, value in zip(fields, values(utterance)):
            if field["value"] != value:
                return act("type", field["ref"], value)
        return submit(root)
    return solver


def solve_explore(headers):
    """Click the link named in the utterance once visible; else open the next section/tab."""
    def solver(utterance, root, done):
        target = quoted(utterance)[0]
        links = [n for n in walk(root) if n["text"] == target and n["tag"] in ("span", "a")]
        if links:
            return click_first(links)
        unopened = [h for h in headers(root) if act("click", h["ref"]) not in done]
        return click_first(unopened or headers(root))
    return solver


def solve_tree(utterance, root, done):
    target = quoted(utterance)[0]
    names = find(root, "span", target)
    if names:
        return click_first(names)
    closed = [n for n in walk(root) if "expandable-hitarea" in n["classes"].split()]
    return click_first(closed)


def solve_algebra(utterance, root, done):
    problem = [n for n in walk(root) if n["id"] == "math-problem"][0]["text"]
    lhs, rhs = problem.split("=")
    assert re.fullmatch(r"[\dx+\-*/ ]+", lhs + rhs), problem
    f = lambda x: eval(lhs.replace("x", f"({x})")) - eval(rhs.replace("x", f"({x})"))
    answer = -f(0) / (f(1) - f(0))
    answer = str(int(answer)) if answer == int(answer) else str(answer)
    return solve_fields(lambda u: [answer])(utterance, root, done)


def solve_autocomplete(utterance, root, done):
    start, *end = quoted(utterance)
    field = find(root, "input_text")[0]
    matches = lambda text: text.startswith(start) and (not end or text.endswith(end[0]))
    if matches(field["value"]):
        return submit(root)
    for item in walk(root):
        if item["tag"] in ("li", "div") and item["text"] and "ui-menu" in " ".join(
                a["classes"] for a in (item, item["parent"]) if a) and matches(item["text"]):
            return act("click", item["ref"])
    return act("type", field["ref"], start)


def solve_widget(utterance, root, done):
    kind = quoted(utterance)[0]
    tag = {"button": "button", "checkbox": "input_checkbox", "radio": "input_radio",
           "text": "input_text", "textarea": "textarea"}[kind]
    return click_first(find(root, tag))


def solve_list(utterance, root, done):
    option = re.match(r"Select (.*) from the list", utterance).group(1)
    select = find(root, "select")[0]
    return submit(root) if select["value"] == option else act("select", select["ref"], option)


def click_text(tag, text_of):
    def solver(utterance, root, done):
        return click_first(find(root, tag, text_of(utterance, done)))
    return solver


def ordinal(utterance):
    return int(re.search(r"(\d+)(st|nd|rd|th)", utterance).group(1))


SOLVERS = {
    "choose-list": solve_list,
    "click-button": click_text("button", lambda u, done: quoted(u)[0]),
    "click-button-sequence": click_text("button", lambda u, done: "TWO" if done else "ONE"),
    "click-checkboxes": solve_checkboxes,
    "click-checkboxes-large": solve_checkboxes,
    "click-checkboxes-transfer": solve_checkboxes,
    "click-collapsible": lambda u, root, done: (
        click_first(find(root, "h3")) if "ui-accordion-header-collapsed" in find(root, "h3")[0]["classes"]
        else submit(root)),
    "click-collapsible-2": solve_explore(lambda root: find(root, "h3")),
    "click-dialog": lambda u, root, done: click_first(find(root, "button", cls="ui-dialog-titlebar-close")),
    "click-dialog-2": lambda u, root, done: (
        click_first(find(root, "button", cls="ui-dialog-titlebar-close")) if quoted(u)[0].lower() == "x"
        else click_first(find(root, "button", quoted(u)[0]))),
    "click-link": click_text("span", lambda u, done: quoted(u)[0]),
    "click-option": solve_checkboxes,
    "click-tab": click_text("a", lambda u, done: re.search(r"(Tab #\d+)", u).group(1)),
    "click-tab-2": solve_explore(lambda root: find(root, "a", cls="ui-tabs-anchor")),
    "click-test": lambda u, root, done: click_first(find(root, "button")),
    "click-test-2": click_text("button", lambda u, done: re.search(r"button (\w+)", u).group(1)),
    "click-widget": solve_widget,
    "enter-password": solve_fields(lambda u: [quoted(u)[0]] * 2),
    "enter-text": solve_fields(lambda u: [quoted(u)[0]]),
    "enter-text-dynamic": solve_fields(lambda u: [quoted(u)[0]]),
    "focus-text": lambda u, root, done: click_first(find(root, "input_text")),
    "focus-text-2": lambda u, root, done: click_first(find(root, "input_text")[ordinal(u) - 1:]),
    "login-user": solve_fields(lambda u: quoted(u)[:2]),
    "navigate-tree": solve_tree,
    "simple-algebra": solve_algebra,
    "use-autocomplete": solve_autocomplete,
}


class MiniWoBEnv(Env):
    name = "miniwob"
    max_turns = 20
    concurrency = "threads"   # each env owns its browser; Python only waits on chromedriver

    def __init__(self):
        self.browser = Browser()
        self.example = None

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """path: a text file of task ids "<task>#<seed>" (one a line), else every task of TASKS
        with the split's seeds (test: 0-9, train: 1000-1099)."""
        if path:
            with open(path) as f:
                return [cls.make_task(line.strip()) for line in f if line.strip()]
        split = split or "test"
        if split not in SEEDS:
            raise ValueError(f"unknown MiniWoB split {split!r}; known: {', '.join(SEEDS)}")
        return [cls.make_task(f"{name}#{seed}") for name in TASKS for seed in SEEDS[split]]

    @staticmethod
    def make_task(task_id):
        task_name, _, seed = task_id.rpartition("#")
        if task_name not in SOLVERS or not seed.isdigit():
            raise ValueError(f"bad MiniWoB task id {task_id!r}: expected <task>#<seed> with task one of {TASKS}")
        return Task(id=task_id, prompt=task_name, data={"task_name": task_name, "seed": int(seed)})

    def reset(self, task):
        if self.example is None:
            self.example = self.one_shot()
        first = self.start(task)
        return [{"role": "user", "content": INSTRUCTIONS}, {"role": "assistant", "content": "OK."},
                *self.example, {"role": "user", "content": first}]

    def start(self, task):
        self.task = task
        self.actions = []
        self.browser.start(task.data["task_name"], task.data["seed"])
        self.utterance = self.browser.utterance()
        self.root = self.browser.dom()
        return f"Task: {self.utterance}\nPage:\n" + "\n".join(render(self.root))

    def one_shot(self):
        """A whole real login-user episode answered by its solver (ends on the last action)."""
        messages = [{"role": "user", "content": self.start(EXAMPLE_TASK)}]
        while True:
            reply = self.expert_reply()
            messages.append({"role": "assistant", "content": reply})
            step = self.step(reply)
            if step.done:
                break
            messages.append({"role": "user", "content": step.observation})
        assert step.success, "the one-shot example episode failed"
        return messages

    @classmethod
    def parse_action(cls, reply):
        """(name, args) for the last "Action: name(args)" line, else None."""
        found = re.findall(r"^\s*Action:\s*(click|type|select)\s*\((.*)\)\s*$", reply, re.MULTILINE)
        if not found:
            return None
        name, args = found[-1]
        try:
            args = ast.literal_eval(f"[{args}]")
        except (ValueError, SyntaxError):
            return None
        want = (int,) if name == "click" else (int, str)
        if len(args) != len(want) or not all(isinstance(a, t) for a, t in zip(args, want)):
            return None
        return name, args

    def step(self, reply):
        parsed = self.parse_action(reply)
        if parsed is None:
            return Step(FORMAT_HINT, info={"valid_format": False, "valid_action": False, "action": ""})
        name, args = parsed
        action = act(name, *args)
        refs = {n["ref"] for n in walk(self.root) if n["tag"] != "t"}
        result = f"there is no element [{args[0]}] on the page" if args[0] not in refs \
            else getattr(self.browser, name)(*args)
        info = {"valid_format": True, "valid_action": result is True, "action": action}
        if result is not True:
            return Step(f"Invalid action: {result}.\nPage:\n" + "\n".join(render(self.root)), info=info)
        self.actions.append(action)
        time.sleep(SETTLE_S[name])
        done, raw_reward = self.browser.done()
        if done:
            success = raw_reward > 0
            return Step("", done=True, reward=float(success), success=success, finish="answered",
                        info={**info, "raw_reward": raw_reward})
        self.root = self.browser.dom()
        return Step("Page:\n" + "\n".join(render(self.root)), info=info)

    def expert_reply(self):
        action = SOLVERS[self.task.data["task_name"]](self.utterance, self.root, self.actions)
        return f"Thought: The task says: {self.utterance} The next step towards it is {action}.\nAction: {action}"

    def close(self):
        self.browser.close()
