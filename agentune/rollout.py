"""Running episodes: one (run_episode) and many, concurrently and resumably (run_episodes).

Used by 01_collect.py (teacher trajectories) and 05_eval.py (the tuned model). Each worker owns
one environment for the whole run; each finished episode is appended to the output file at once
as one JSON line, so a killed run loses only the episodes in flight, and a restart skips the
task ids already there.
"""
import os
import pickle
import queue
import random
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter

from agentune.agents import ContextLimit, LLMError
from agentune.envs import env_class
from agentune.envs.base import NoReference, TaskError
from agentune.records import DataError, JsonlWriter, read_jsonl, write_jsonl

FINISHES = ("answered", "max_turns", "invalid_format", "repetition", "context_limit", "task_error",
            "no_reference", "env_error", "llm_error")
# episodes that ended like this say something about the infrastructure (endpoint, environment),
# nothing about the task or the agent: a restart runs them again
RETRIED_FINISHES = ("env_error", "llm_error")
# this many episodes in a row failing that way means the endpoint or the environment is down or
# misconfigured: stop instead of burning through the task list
STOP_AFTER_FAILURES = 20


def describe_error(e):
    """One line: the exception and, for unexpected ones, where it was raised."""
    text = f"{type(e).__name__}: {e}"
    if not isinstance(e, (LLMError, ContextLimit)) and e.__traceback__ is not None:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        text += f" (at {os.path.basename(frame.filename)}:{frame.lineno} in {frame.name})"
    return text


def run_episode(env, agent, task, max_turns):
    """Play one task to the end; never raises for episode failures, they end up in 'finish'."""
    start = time.time()
    record = {"id": f"{env.name}/{task.id}", "env": env.name, "task_id": task.id,
              "agent": agent.describe(), "messages": [], "reward": 0.0, "success": False,
              "finish": None, "turns": 0, "agent_messages": [], "steps": [], "time_s": 0.0,
              "usage": {"prompt_tokens": 0, "completion_tokens": 0}}

    def end(finish, error=None):
        record["finish"] = finish
        if error is not None:
            record["error"] = describe_error(error)
        record["time_s"] = round(time.time() - start, 3)
        return record

    def end_unfinished(finish, error=None):
        """Cut short by the runner: some benchmarks still judge such an episode."""
        try:
            judged = env.score_unfinished()
        except Exception as e:
            return end("env_error", e)
        if judged is not None:
            record["reward"], record["success"] = float(judged[0]), bool(judged[1])
        return end(finish, error)

    agent.start_episode()
    try:
        messages = [dict(m) for m in env.reset(task)]
    except TaskError as e:
        return end("task_error", e)
    except Exception as e:
        return end("env_error", e)
    record["messages"] = messages  # the same list grows below: the record is the conversation
    for _ in range(max_turns):
        try:
            reply = agent.reply(messages, env)
        except ContextLimit as e:
            return end_unfinished("context_limit", e)
        except NoReference as e:   # the expert has nothing to replay: not the agent's failure
            return end("no_reference", e)
        except Exception as e:  # LLMError, or a failing expert / agent bug: the agent side failed
            return end("llm_error", e)
        for key, value in (reply.usage or {}).items():
            record["usage"][key] = record["usage"].get(key, 0) + value
        messages.append({"role": "assistant", "content": reply.content})
        record["agent_messages"].append(len(messages) - 1)  # what the agent wrote: trained by 02-04
        record["turns"] += 1
        try:
            step = env.step(reply.content)
        except Exception as e:
            return end("env_error", e)
        record["steps"].append({k: step.info.get(k) for k in ("valid_format", "valid_action", "action")})
        if step.done:
            record["reward"], record["success"] = float(step.reward), bool(step.success)
            return end(step.finish or "answered")
        messages.append({"role": "user", "content": step.observation})
    return end_unfinished("max_turns")


# ---------------------------------------------------------------------------------------------
# Environments in their own process (Env.concurrency == "processes")

class EnvProcess:
    """An env living in a child Python process, for envs whose work holds the GIL: the same
    methods, forwarded over a pipe as pickles, so the worker thread, the agent (one shared HTTP
    client or one batching GPU model) and the output file all stay in this process. The child
    leaves when its stdin closes, i.e. also when this process is killed."""

    def __init__(self, env_name, env_kwargs):
        cls = env_class(env_name)
        self.name, self.max_turns = cls.name, cls.max_turns
        self.proc = subprocess.Popen([sys.executable, "-m", "agentune.rollout", env_name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True)  # Ctrl-C reaches the parent only
        self._call("__init__", env_kwargs)

    def _call(self, method, *args):
        try:
            pickle.dump((method, args), self.proc.stdin)
            self.proc.stdin.flush()
            ok, value = pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            raise RuntimeError(f"the {self.name} env process died (exit code {self.proc.poll()})") from None
        if not ok:
            if isinstance(value, tuple) and value[0] == "TaskError":
                raise TaskError(value[1])
            raise RuntimeError(f"in the {self.name} env process:\n{value}")
        return value

    def reset(self, task):
        return self._call("reset", task)

    def step(self, reply):
        return self._call("step", reply)

    def expert_reply(self):
        return self._call("expert_reply")

    def score_unfinished(self):
        return self._call("score_unfinished")

    def close(self):
        try:
            if self.proc.poll() is None:
                self._call("close")
        finally:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_env(env_name):
    """The child side of EnvProcess: (method, args) in, (ok, result or traceback) out."""
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the env prints must not corrupt the pipe: send it to stderr
    sys.stdout = sys.stderr
    env = None
    while True:
        try:
            method, args = pickle.load(requests)
        except EOFError:  # the parent is done or gone
            break
        try:
            if method == "__init__":
                env = env_class(env_name)(**args[0])
                result = (True, None)
            else:
                result = (True, getattr(env, method)(*args))
        except TaskError as e:
            result = (False, ("TaskError", str(e)))
        except Exception:
            result = (False, traceback.format_exc())
        pickle.dump(result, replies)
        replies.flush()
        if method == "close":
            env = None
            break
    if env is not None:
        env.close()


# ---------------------------------------------------------------------------------------------
# Many episodes

def sample_tasks(tasks, limit):
    """`limit` tasks spread over the whole list. Task files are often sorted by kind (ALFWorld's
    train split: all 'look_at_obj_in_light' games first), so the first N would teach one kind only.
    A fixed-seed permutation decides, and its order is kept: the same N every run, a larger N starts
    with a smaller one's tasks (a rerun with a larger --limit resumes), and a collection stopped
    half-way holds a mix of every kind."""
    if not limit:
        return tasks
    order = list(range(len(tasks)))
    random.Random(0).shuffle(order)
    return [tasks[i] for i in order[:limit]]


def shard_tasks(tasks, shard):
    """Shard 'i/n' (i = 0..n-1, as slurm array indices) of a task list: every n-th task from the
    i-th, so the n shards partition the list and each gets a similar mix."""
    if not shard:
        return tasks
    try:
        i, n = map(int, shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise SystemExit(f"--shard={shard}: expected i/n with 0 <= i < n, e.g. --shard=0/8") from None
    return tasks[i::n]


def recorded_episodes(out_path):
    """{task_id: (finish, success, reward)} of the episodes already in out_path. Episodes that
    ended in env_error or llm_error are removed from the file (an atomic rewrite) so that this
    run retries them."""
    if not os.path.exists(out_path):
        return {}
    done, retry = {}, 0
    for where, record in read_jsonl(out_path):
        if "task_id" not in record or "finish" not in record:
            raise DataError(where, "not an episode record (no task_id/finish)",
                            "point the output somewhere else or remove the file")
        if record["finish"] in RETRIED_FINISHES:
            retry += 1
        else:
            done[record["task_id"]] = (record["finish"], record["success"], record["reward"])
    if retry:
        print(f"{out_path}: retrying {retry} episodes that ended in {' or '.join(RETRIED_FINISHES)}")
        write_jsonl(out_path, (r for _, r in read_jsonl(out_path) if r["finish"] not in RETRIED_FINISHES))
    return done


def check_same_agent(path, agent_info):
    """Appending another model's episodes to a file would mix two models in one score or one
    training set: refuse (kind and model must match the file's first record)."""
    if not os.path.exists(path):
        return
    for where, record in read_jsonl(path):
        theirs = record.get("agent", {})
        if (theirs.get("kind"), theirs.get("model")) != (agent_info["kind"], agent_info["model"]):
            raise SystemExit(f"{where}: episodes of another agent ({theirs.get('kind')} "
                             f"{theirs.get('model')!r}) are in this file\n  fix: pass another "
                             f"--out_dir, or delete {path} to rerun it")
        return


def close_quietly(env):
    try:
        env.close()
    except Exception as e:
        print(f"warning: closing a {env.name} env failed: {describe_error(e)}")


def run_episodes(env_name, tasks, agent, out_path, workers=1, env_kwargs=None, max_turns=None,
                 desc=None):
    """Run every task not yet recorded in out_path with `workers` concurrent episodes, appending
    one record per finished episode. Returns the summary (also printed)."""
    from tqdm import tqdm
    env_cls = env_class(env_name)
    env_kwargs = env_kwargs or {}
    max_turns = max_turns or env_cls.max_turns
    seen = Counter(t.id for t in tasks)
    if seen and seen.most_common(1)[0][1] > 1:
        raise SystemExit(f"{env_name}: duplicate task id {seen.most_common(1)[0][0]!r}: "
                         f"ids must be unique (they key resume)")

    check_same_agent(out_path, agent.describe())
    done = recorded_episodes(out_path)
    todo = queue.Queue()
    for task in tasks:
        if task.id not in done:
            todo.put(task)
    n_todo = todo.qsize()
    print(f"{env_name}: {len(tasks)} tasks, {len(tasks) - n_todo} already in {out_path}, "
          f"{n_todo} to run with {min(workers, n_todo)} worker(s) ({env_cls.concurrency})")

    def make_env():
        if env_cls.concurrency == "processes":
            return EnvProcess(env_name, env_kwargs)
        return env_cls(**env_kwargs)

    writer = JsonlWriter(out_path)
    lock = threading.Lock()
    stop = threading.Event()
    fatal = []             # what stops the run: an env that cannot start, an endpoint that is down
    new = []               # (finish, success, reward, usage) of this run's episodes
    successes, failures_in_row = [0], [0]
    bar = tqdm(total=n_todo, desc=desc or env_name, unit="ep", dynamic_ncols=True, disable=n_todo == 0)

    def worker():
        env = None
        try:
            while not stop.is_set():
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    return
                if env is None:
                    env = make_env()
                record = run_episode(env, agent, task, max_turns)
                with lock:
                    writer.write(record)
                    new.append((record["finish"], record["success"], record["reward"], record["usage"]))
                    # (a failing expert is an llm_error too, but says nothing about an endpoint)
                    failed = record["finish"] == "env_error" or record.get("error", "").startswith("LLMError")
                    failures_in_row[0] = failures_in_row[0] + 1 if failed else 0
                    if failures_in_row[0] >= STOP_AFTER_FAILURES and not stop.is_set():
                        fatal.append(SystemExit(
                            f"{env_name}: stopped after {STOP_AFTER_FAILURES} episodes in a row "
                            f"ended in {record['finish']}; the last: {record['error']}\n"
                            f"  fix the endpoint/environment and rerun: those episodes are retried"))
                        stop.set()
                    successes[0] += record["success"]
                    bar.update(1)
                    bar.set_postfix(success=f"{successes[0] / len(new):.0%}")
                if record["finish"] == "env_error":  # its state is suspect: start a fresh one
                    close_quietly(env)
                    env = None
        except BaseException as e:
            fatal.append(e)
            stop.set()
        finally:
            if env is not None:
                close_quietly(env)

    start = time.time()
    threads = [threading.Thread(target=worker, daemon=True, name=f"{env_name}-worker{i}")
               for i in range(min(workers, n_todo))]
    for t in threads:
        t.start()
    try:
        interrupted = False
        while any(t.is_alive() for t in threads):
            try:
                for t in threads:
                    t.join(0.2)
            except KeyboardInterrupt:
                if interrupted:
                    raise  # second Ctrl-C: abandon the episodes in flight (as kill -9 would)
                interrupted = True
                stop.set()
                print("\ninterrupted: finishing the episodes in flight (Ctrl-C again to abandon them)")
    finally:
        bar.close()
        writer.close()
    elapsed = time.time() - start
    if fatal:
        e = fatal[0]
        if isinstance(e, SystemExit):
            raise e
        raise SystemExit(f"{env_name}: could not run episodes: {describe_error(e)}") from e

    everything = list(done.values()) + [(f, s, r) for f, s, r, _ in new]
    summary = {
        "env": env_name, "out": out_path, "episodes": len(everything), "new": len(new),
        "success_rate": sum(s for _, s, _ in everything) / max(1, len(everything)),
        "mean_reward": sum(r for _, _, r in everything) / max(1, len(everything)),
        "finish": dict(Counter(f for f, _, _ in everything).most_common()),
        "elapsed_s": round(elapsed, 2), "episodes_per_s": len(new) / elapsed if elapsed else 0.0,
        "prompt_tokens": sum(u.get("prompt_tokens", 0) for *_, u in new),
        "completion_tokens": sum(u.get("completion_tokens", 0) for *_, u in new),
    }
    print(format_summary(summary))
    if interrupted:
        raise SystemExit(f"interrupted: {len(new)} episodes recorded in {out_path}; "
                         f"rerun the same command to continue")
    return summary


def format_summary(s):
    finishes = ", ".join(f"{k} {v}" for k, v in s["finish"].items()) or "none"
    return (f"{s['env']}: {s['episodes']} episodes in {s['out']} ({s['new']} new, "
            f"{s['episodes_per_s']:.2f}/s over {s['elapsed_s']:.0f}s)\n"
            f"  success {s['success_rate']:.1%}  mean reward {s['mean_reward']:.3f}  finish: {finishes}\n"
            f"  tokens this run: {s['prompt_tokens']} prompt, {s['completion_tokens']} completion")


if __name__ == "__main__":  # python -m agentune.rollout ENV: the child side of EnvProcess
    serve_env(sys.argv[1])
