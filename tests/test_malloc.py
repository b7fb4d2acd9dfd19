"""The trainer re-runs itself on tcmalloc (agentune/malloc.py): the library is mapped in the process,
the script's argv and interpreter options survive the exec, children do not inherit the preload,
AGENTUNE_MALLOC=tcmalloc asks for it (GPU machines and the ranks of multi-process launches stay on glibc
otherwise) and AGENTUNE_MALLOC=system
keeps glibc's malloc."""
import ctypes.util
import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, os, sys
from agentune.malloc import use_tcmalloc
use_tcmalloc()
import subprocess
maps = open("/proc/self/maps").read()
child = subprocess.run(["sh", "-c", "echo ${LD_PRELOAD:-}"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"tcmalloc": "tcmalloc" in maps, "state": os.environ.get("AGENTUNE_MALLOC"), "argv": sys.argv[1:], "options": sys.orig_argv[1:2],
                  "child_preload": child, "preload": os.environ.get("LD_PRELOAD", "")}))
"""


def run(tmp_path, **env):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    clean = {k: v for k, v in os.environ.items() if k not in ("AGENTUNE_MALLOC", "LD_PRELOAD", "WORLD_SIZE")}
    done = subprocess.run([sys.executable, "-u", str(path), "--x=1", "two words"], capture_output=True, text=True,
                          timeout=60, env={**clean, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("tcmalloc_minimal"),
                    reason="no libtcmalloc_minimal here (scripts/setup.d/20-apt.sh installs it)")
def test_script_reruns_on_tcmalloc_and_children_do_not_inherit_it(tmp_path):
    result = run(tmp_path)
    assert result["tcmalloc"] and result["argv"] == ["--x=1", "two words"] and result["options"] == ["-u"]
    assert "tcmalloc" not in result["child_preload"] and "tcmalloc" not in result["preload"] and not result["state"]
    assert not run(tmp_path, WORLD_SIZE="2")["tcmalloc"]  # a rank of a multi-process launch: glibc
    assert run(tmp_path, AGENTUNE_MALLOC="tcmalloc", WORLD_SIZE="2")["tcmalloc"]  # unless asked for
    off = run(tmp_path, AGENTUNE_MALLOC="system")
    assert not off["tcmalloc"] and off["argv"] == ["--x=1", "two words"]
