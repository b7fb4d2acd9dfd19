"""Run a CPU training process on tcmalloc (gperftools) instead of glibc's malloc, where installed.

PyTorch keeps no cache of CPU memory: every activation and gradient of a step comes from malloc
and goes back to it. glibc serves large blocks with fresh mmaps and unmaps them when freed, so each
step faults its working set in page by page again (4 million minor faults and 28 s of kernel time
in a 76 s run of 8 steps on a 2-core AMX CPU); tcmalloc keeps freed memory for the next
step. On that CPU the bf16 training path ran 1.24x (bench) to 1.5x (steady steps) faster with it
(README, "Training on the CPU").

The allocator has to be in place before the process starts, so `use_tcmalloc()`, called at the
top of a script before torch is imported, runs the script again (exec, same pid, same argv) with
tcmalloc in LD_PRELOAD; then it takes it out of the environment again, so that the servers,
browsers and sandboxes the process starts keep their own allocator.
GPU machines (a /dev/nvidiactl) stay on glibc as before, untested there, and so do the ranks of a
multi-process launch (WORLD_SIZE > 1): on tcmalloc 2 of ~9 two-rank CPU test launches had a rank
abort at exit ("terminate called without an active exception"), none of 4 on glibc.
AGENTUNE_MALLOC=tcmalloc asks for it anyway. AGENTUNE_MALLOC=system turns it off; without the
library (Debian: libtcmalloc-minimal4, installed by scripts/setup.d/20-apt.sh) the process stays on
glibc, with a note.
"""
import ctypes.util
import os
import sys

LIBRARY = "tcmalloc_minimal"
STATE = "AGENTUNE_MALLOC"   # system: off; tcmalloc: on, also on a GPU machine; else the library this
                            # process was re-executed with


def use_tcmalloc():
    """Re-execute this script on tcmalloc once (Linux); a no-op where it runs on it already."""
    state = os.environ.get(STATE, "")
    if state == "system" or not sys.platform.startswith("linux"):
        return
    gpu_machine = os.path.exists("/dev/nvidiactl")
    one_rank_of_many = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not state and (gpu_machine or one_rank_of_many):  # glibc, unless AGENTUNE_MALLOC=tcmalloc
        return
    if state and state != "tcmalloc":
        # re-executed: the library is loaded; children inherit neither it nor the state
        rest = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p and p != state]
        if rest:
            os.environ["LD_PRELOAD"] = ":".join(rest)
        else:
            os.environ.pop("LD_PRELOAD", None)
        os.environ.pop(STATE)
        return
    library = ctypes.util.find_library(LIBRARY)
    if not library:
        print(f"note: lib{LIBRARY} not found: training runs on glibc's malloc, slower on CPUs "
              "(apt-get install libtcmalloc-minimal4; AGENTUNE_MALLOC=system hides this note)", file=sys.stderr)
        os.environ[STATE] = "system"
        return
    preload = ":".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ, **{STATE: library, "LD_PRELOAD": preload})
    # tcmalloc reports every allocation over 1 GB on stderr (a 7B model's weights make many)
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(2 ** 60))
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
