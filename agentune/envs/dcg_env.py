"""Digital Card Game (AgentBench's Aquawar), held-out in AgentTuning: one episode is one game of
AgentBench's C++ engine, refereed by its judger.py, between the LLM player and a rule-based
baseline, won or lost. Score: the win rate (AgentBench's `win_rate`), x 100.

A game runs as AgentBench's CardGame.predict_single runs it: `judger.py logic/bin/main P0 P1`,
stage 2 (guess an enemy fish, then act, in turns), the LLM in seat `agent` against baseline 1 or 2
in the other. The LLM player is AgentBench's own (AI_En.Agent: prompts, parsing, 5 tries per
decision; dcg_player.py); only its LLM calls come to this env over a Unix socket instead of
AgentBench's TCP task server. The winner is read from the referee's output as AgentBench reads it:
player 1 unless the output has `"0" : 0`, so a 0:0 draw counts for player 1 (kept: it is how the
paper's figures were computed).

Splits (AgentBench's configs): per (baseline 1/2) x (seat 0/1), `test_time` games: dev 3 (12 games),
std 5 (20), ext 50 (200: what AgentTuning reports).

Chat form: AgentBench sends each call a fresh list (the last 2 accepted action or 3 accepted guess
(prompt, reply) pairs, the rules with a fixed "Okay, ..." reply, the prompt). Our loop keeps one
conversation: the first call's list opens it, every later call adds its prompt as a user turn,
with the rules text before it the first time that kind of rules (guess, action) comes up.

The engine and the Python SDK are built from AgentBench's source into CACHE_DIR/card_game by
build() (scripts/setup.d/75-card_game.sh): g++ for the engine, cmake + pybind11 for the SDK.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from agentune.envs.base import Env, Step, Task
from agentune.paths import CACHE_DIR, data_path

SOURCE = data_path("agentbench", "card_game", "AgentBench.old", "src", "tasks", "card_game")
BUILD = os.path.join(CACHE_DIR, "card_game")
PLAYER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcg_player.py")
SPLITS = {"dev": 3, "std": 5, "ext": 50}   # AgentBench's test_time per (baseline, seat)
NO_GUESS = "I have no guess to make."  # the expert's reply when baseline 2 has no guess: not a move
PYBIND11_DIR_IN_SOURCE = "/home/piano/mambaforge/lib/python3.10/site-packages/pybind11/share/cmake/pybind11"


def is_built(root):
    return os.access(os.path.join(root, "logic", "bin", "main"), os.X_OK) and \
        bool(glob.glob(os.path.join(root, "AI_SDK", "Python", "sdk", "ai_client*.so")))


def build(source=SOURCE, dest=BUILD):
    """Copy AgentBench's card game source to dest and build the engine and the SDK (once)."""
    if is_built(dest):
        return dest
    if not os.path.isdir(source):
        raise SystemExit(f"{source}: the card game source is missing\n  fix: set AGENTUNE_DATA to the data directory")
    import pybind11
    tmp = f"{dest}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    os.makedirs(os.path.join(tmp, "logic", "bin"), exist_ok=True)
    subprocess.run(["make", "-C", os.path.join(tmp, "logic")], check=True, stdout=subprocess.DEVNULL)
    sdk = os.path.join(tmp, "AI_SDK", "Python", "sdk")
    cmakelists = os.path.join(sdk, "CMakeLists.txt")
    with open(cmakelists) as f:
        text = f.read()
    if PYBIND11_DIR_IN_SOURCE not in text:
        raise SystemExit(f"{cmakelists}: the hard-coded pybind11_DIR is not where expected; fix the build step")
    with open(cmakelists, "w") as f:  # the source sets pybind11_DIR to its author's machine
        f.write(text.replace(PYBIND11_DIR_IN_SOURCE, pybind11.get_cmake_dir()))
    out = os.path.join(sdk, "build")
    subprocess.run(["cmake", "-S", sdk, "-B", out,
                    f"-DPYTHON_EXECUTABLE={sys.executable}"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", out, "-j", "2"], check=True, stdout=subprocess.DEVNULL)
    for lib in glob.glob(os.path.join(out, "bin", "ai_client*.so")):
        shutil.copy(lib, sdk)
    if not is_built(tmp):
        raise SystemExit(f"{tmp}: the build finished without logic/bin/main or the SDK's ai_client*.so")
    try:
        os.rename(tmp, dest)
    except OSError:  # built by another process meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class DCGEnv(Env):
    name = "dcg"
    max_turns = 1500      # the game decides the end: up to 128 states, 5 tries per decision
    max_reply_tokens = 128  # AgentBench's generation limit per reply, as for its other tasks here
    concurrency = "threads"

    def __init__(self, stage=2, build_dir=None, game_timeout=600, connect_timeout=60):
        self.root = build_dir or BUILD
        if not is_built(self.root):
            raise SystemExit(f"{self.root}: the card game is not built\n  fix: bash scripts/setup.d/75-card_game.sh")
        self.stage, self.game_timeout, self.connect_timeout = stage, game_timeout, connect_timeout
        self.proc = self.conn = self.file = self.dir = None

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """Games: baseline 1 and 2, the LLM in seat 0 and 1, SPLITS[split] each (default std)."""
        split = split or "std"
        if split not in SPLITS:
            raise SystemExit(f"dcg: unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return [Task(id=f"baseline{base}-seat{seat}-{i}", prompt=f"Aquawar against baseline {base}, LLM as player {seat}",
                     data={"base": base, "seat": seat})
                for base in (1, 2) for seat in (0, 1) for i in range(SPLITS[split])]

    def reset(self, task):
        self.close()
        self.task, self.turns, self.seen_rules = task, 0, set()
        self.dir = tempfile.mkdtemp(prefix="dcg-")
        path = os.path.join(self.dir, "llm.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(1.0)
        python = sys.executable
        # the referee splits each player command at '+', AgentBench's convention for spaces
        llm = [python, PLAYER, self.root, str(self.stage), "0", self.dir, path]
        baseline = [python, os.path.join(self.root, "AI_SDK", "Python", f"basline{task.data['base']}.py"),
                    str(self.stage), "1", self.dir]
        if any(c in arg for arg in llm + baseline for c in " +"):
            raise RuntimeError(f"dcg: paths must not contain spaces or '+': {llm + baseline}")
        players = ["+".join(llm), "+".join(baseline)][::1 if task.data["seat"] == 0 else -1]
        with open(os.path.join(self.dir, "judger.out"), "w") as out:  # a file: a pipe could fill up
            self.proc = subprocess.Popen(
                [python, os.path.join(self.root, "judger", "judger.py"), os.path.join(self.root, "logic", "bin", "main"),
                 *players, "config", os.path.join(self.dir, "replay.json")],
                cwd=self.root, stdout=out, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.connect_timeout
        try:
            while self.conn is None:
                try:
                    self.conn, _ = listener.accept()
                except socket.timeout:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"dcg: the LLM player never connected (referee exit code {self.proc.poll()})")
        finally:
            listener.close()
        self.file = self.conn.makefile("rw", encoding="utf-8")
        self.request = self.receive()
        if self.request is None:
            raise RuntimeError(f"dcg: the game ended before the LLM player was asked anything: "
                               f"{self.outcome()[1]!r}{self.player_error()}")
        self.seen_rules.add(self.request["system"])
        return [dict(m) for m in self.request["messages"]]

    def receive(self):
        """The LLM player's next request, or None when it has left (the game is over)."""
        line = self.file.readline()
        return json.loads(line) if line else None

    def player_error(self):
        path = os.path.join(self.dir, "player_error.txt")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return "\nthe LLM player failed:\n" + f.read()[-2000:]

    def outcome(self):
        """(LLM won, referee output) of a finished game, decided as AgentBench decides it."""
        try:
            self.proc.wait(timeout=self.game_timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"dcg: the referee did not finish within {self.game_timeout} s") from None
        with open(os.path.join(self.dir, "judger.out"), errors="replace") as f:
            output = f.read()
        winner = 1 if '"0" : 0' in output else 0   # AgentBench: a 0:0 draw goes to player 1
        return winner == self.task.data["seat"], output

    def step(self, reply):
        self.turns += 1
        self.file.write(json.dumps({"reply": reply}) + "\n")
        self.file.flush()
        previous, self.request = self.request, self.receive()
        if self.request is None:
            won, _ = self.outcome()
            return Step("", done=True, reward=float(won), success=won, finish="answered",
                        info={"valid_format": True, "valid_action": True, "action": reply.strip()[:200]})
        # the player's accepted-moves count grew: it took the reply (else this is a retry)
        accepted = self.request["accepted"] > previous["accepted"]
        info = {"valid_format": accepted, "valid_action": accepted, "action": reply.strip()[:200]}
        observation = self.request["prompt"]
        if self.request["system"] and self.request["system"] not in self.seen_rules:
            self.seen_rules.add(self.request["system"])
            observation = self.request["system"] + "\n\n" + observation
        return Step(observation, info=info)

    def expert_reply(self):
        """Rule-based baseline 2's move in this position (it passes a guess when it has none)."""
        return self.request["expert"] or NO_GUESS

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self):
        for thing in (self.file, self.conn):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass
        self.file = self.conn = None
        self.kill()
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
