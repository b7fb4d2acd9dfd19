"""The OS sandbox against the real kernel: isolation, limits, persistence, recovery, cleanup.

Needs root and the rootfs (scripts/build_rootfs.sh); skipped with the reason otherwise.
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from agentune.sandbox import ROOTFS, TIMEOUT, DockerSandbox, Sandbox, SandboxError

pytestmark = pytest.mark.skipif(not Sandbox.available()[0], reason=Sandbox.available()[1])


@pytest.fixture
def box():
    with Sandbox(memory_mb=256, pids=128) as sandbox:
        yield sandbox


def sandbox_pids(sandbox):
    """Host pids of every process in the machine (from its pids cgroup)."""
    pids = []
    for path in sandbox.cgroups[:1]:   # the pids cgroup (v1), or the one cgroup (v2)
        if True:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids, seconds=5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_state_persists_between_commands(box):
    assert box.run("cd /tmp && export GREETING=hello && f() { echo \"f:$1\"; }") == ("", 0)
    assert box.run("pwd; echo $GREETING; f x") == ("/tmp\nhello\nf:x\n", 0)
    box.run("sleep 300 &")
    out, code = box.run("jobs")
    assert "sleep 300" in out and code == 0
    assert box.run("false")[1] == 1
    assert box.run("exit 3 2>/dev/null | true; (exit 7)")[1] == 7
    # a syntax error is reported, the shell survives
    out, code = box.run('echo "unterminated')
    assert code == 2 and "unexpected EOF" in out
    assert box.run("echo still here") == ("still here\n", 0)
    # output without a final newline, multi-line commands, heredocs
    assert box.run("printf abc") == ("abc", 0)
    assert box.run("cat <<'EOF'\nline 1\n$HOME\nEOF") == ("line 1\n$HOME\n", 0)


def test_root_can_change_the_whole_machine(box):
    out, code = box.run("id -u && useradd -m alice && su - alice -c whoami && "
                        "echo x > /usr/bin/newfile && chmod u+s /usr/bin/find && apt-get --version | head -1")
    assert code == 0, out
    assert out.startswith("0\nalice\n")


def test_timeout_interrupts_and_the_shell_lives_on(box):
    start = time.monotonic()
    out, code = box.run("echo begin; sleep 100", timeout=1)
    assert code == TIMEOUT and "begin" in out and time.monotonic() - start < 5
    assert box.run("echo ok") == ("ok\n", 0)
    # a command that ignores Ctrl-C is killed; one waiting for input is interrupted
    out, code = box.run("bash -c \"trap '' INT; sleep 100\"", timeout=1)
    assert code == TIMEOUT
    out, code = box.run("read line; echo got $line", timeout=1)
    assert code == TIMEOUT
    assert box.run("echo ok2") == ("ok2\n", 0)


def test_host_files_are_untouched(box, tmp_path):
    marker = tmp_path / "host-marker"
    marker.write_text("host secret")
    before = open(os.path.join(ROOTFS, "etc/passwd")).read()
    out, code = box.run(f"echo pwned > /etc/passwd; rm -rf /usr/share/doc; echo x > {tmp_path}/from-sandbox; "
                        f"cat {marker}; ls /proc/1/root{tmp_path}", timeout=10)
    assert "host secret" not in out and code != 0
    assert not (tmp_path / "from-sandbox").exists()
    assert open(os.path.join(ROOTFS, "etc/passwd")).read() == before
    assert os.path.isdir(os.path.join(ROOTFS, "usr/share/doc"))
    assert box.run("cat /etc/passwd") == ("pwned\n", 0)   # while inside it is really changed


def test_no_network(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        out, _ = box.run("ip -o link | awk -F': ' '{print $2}'")
        assert out.split() == ["lo"]
        probe = textwrap.dedent(f"""
            import socket
            for host in ("127.0.0.1", "10.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, {port}), timeout=2); print(host, "connected")
                except OSError as e:
                    print(host, "blocked", type(e).__name__)
        """)
        out, code = box.run(f"python3 -c {probe!r}".replace("\\n", "\n"), timeout=20)
        assert "connected" not in out and out.count("blocked") == 3, out
    finally:
        server.close()


def test_fork_bomb_is_contained(box):
    out, code = box.run(":(){ :|:& };:", timeout=3)
    assert len(sandbox_pids(box)) <= 128
    assert subprocess.run(["true"]).returncode == 0   # the host can still start processes
    pids = sandbox_pids(box)
    box.close()
    assert wait_gone(pids) == []


def test_memory_limit(box):
    out, code = box.run("python3 -c 'x = bytearray(600 << 20); print(\"allocated\")'", timeout=30)
    assert "allocated" not in out and code != 0
    assert box.run("echo alive") == ("alive\n", 0)


def test_escape_attempts_fail(box):
    attempts = {
        "mount": "mount -t tmpfs none /mnt",
        "remount proc/sys": "mount -o remount,rw /proc/sys",
        "umount": "umount -l /proc/sys",
        "write /proc/sys": "echo 1 > /proc/sys/kernel/sysrq",
        "write /sys": "echo 1 > /sys/kernel/mm/transparent_hugepage/enabled",
        "mknod a disk": "mknod /tmp/disk b 8 0",
        "new mount namespace": "unshare --mount true",
        "nsenter init": "nsenter -t 1 -m true",
        "set the clock": "date -s '2001-01-01'",
        "raise the pids limit": "echo max > /sys/fs/cgroup/pids/pids.max",
    }
    for name, command in attempts.items():
        out, code = box.run(command + " 2>&1", timeout=10)
        assert code != 0, f"{name} succeeded: {out}"
    # no dangerous capability, for the shell and for exec'd processes alike
    dangerous = {"net_admin": 12, "sys_module": 16, "sys_rawio": 17, "sys_ptrace": 19, "sys_admin": 21,
                 "sys_boot": 22, "sys_time": 25, "mknod": 27, "mac_admin": 33, "bpf": 39}
    for out, _ in (box.run("grep CapBnd /proc/self/status"), box.exec(["grep", "CapBnd", "/proc/self/status"])):
        caps = int(out.split()[1], 16)
        assert [name for name, bit in dangerous.items() if caps >> bit & 1] == []
    # chroot is allowed (as in Docker), but breaking out of it only reaches the machine's root
    escape = ("import os\nos.makedirs('/tmp/jail', exist_ok=True)\nfd = os.open('/', os.O_RDONLY)\n"
              "os.chroot('/tmp/jail')\nos.fchdir(fd)\nfor _ in range(50): os.chdir('..')\n"
              "os.chroot('.')\nprint(sorted(os.listdir('/')))")
    out, code = box.run(f"python3 -c {escape!r}".replace("\\n", "\n"))
    inside, _ = box.run("python3 -c 'import os; print(sorted(os.listdir(\"/\")))'")
    assert code == 0 and out == inside and "jail" not in out
    assert not os.path.exists(os.path.join(ROOTFS, "tmp/jail"))
    # only the machine's own processes are visible; the host's are not
    out, _ = box.run("ls /proc | grep -c '^[0-9]'")
    assert int(out) < 20
    out, _ = box.run(f"cat /proc/{os.getpid()}/cmdline 2>/dev/null | tr '\\0' ' '")
    assert "pytest" not in out
    assert box.run("hostname hacked; hostname")[0] != socket.gethostname()
    assert socket.gethostname() != "hacked"


def test_exec_and_scratch_copies(box):
    assert box.exec(["bash", "-c", "echo live > /root/state; pwd; id -u"]) == ("/\n0\n", 0)
    out, code = box.exec(["bash", "-c", "echo scratch > /root/state; rm -rf /usr/share; cat /root/state"], scratch=True)
    assert (out, code) == ("scratch\n", 0)
    assert box.run("cat /root/state; ls -d /usr/share") == ("live\n/usr/share\n", 0)
    assert box.exec(["python3", "-c", "import sys; print(sys.argv[1:])", "a b", "c"]) == ("['a b', 'c']\n", 0)
    assert box.exec(["bash", "-c", "echo out; echo err >&2; exit 3"]) == ("out\nerr\n", 3)
    assert box.exec(["no-such-program"])[1] == 127
    for i in range(5):   # each answer belongs to its own call, whichever comes first: exit or EOF
        assert box.exec(["bash", "-c", f"echo {i}; exit {i}"]) == (f"{i}\n", i)
    start = time.monotonic()   # a child left in the background does not keep exec() waiting
    assert box.exec(["bash", "-c", "sleep 100 & echo bg"]) == ("bg\n", 0)
    assert time.monotonic() - start < 5
    start = time.monotonic()
    assert box.exec(["bash", "-c", "echo partial; sleep 100"], timeout=1) == ("partial\n", TIMEOUT)
    assert time.monotonic() - start < 5
    with pytest.raises(SandboxError):   # the shell has run commands: the files are untrusted now
        box.exec(["true"], scratch=True)


def test_exec_is_no_more_privileged_than_the_agent(box):
    """Checkers run after the agent may have replaced any program: they must not gain anything."""
    trap = "#!/bin/sh\nmount -t tmpfs x /mnt && echo ESCAPED; grep CapBnd /proc/self/status\n"
    for program in ("/usr/bin/setpriv", "/usr/bin/env", "/usr/bin/python3", "/usr/bin/unshare"):
        box.run(f"rm -f {program}; printf {trap!r} > {program}; chmod +x {program}")
    out, _ = box.exec(["python3", "-c", "pass"])
    assert "ESCAPED" not in out and "CapBnd" in out
    assert int(out.split()[-1], 16) >> 21 & 1 == 0   # no CAP_SYS_ADMIN


def test_exit_ends_the_machine(box):
    box.run("sleep 500 &")
    pids = sandbox_pids(box)
    with pytest.raises(SandboxError):
        box.run("exit")
    assert wait_gone(pids) == []


def test_nothing_left_after_close():
    box = Sandbox()
    box.start()
    box.run("sleep 1000 & (sleep 1000 &) ; nohup sleep 1000 >/dev/null 2>&1 &")
    pids = sandbox_pids(box)
    cgroups = list(box.cgroups)
    assert len(pids) >= 5
    start = time.monotonic()
    box.close()
    assert time.monotonic() - start < 2
    assert wait_gone(pids) == []
    assert not any(os.path.exists(c) for c in cgroups)
    with open("/proc/self/mounts") as f:
        assert ROOTFS not in f.read()   # the overlay only ever existed in the machine's namespace


CHILD = """
import sys, time
from agentune.sandbox import Sandbox
box = Sandbox()
box.start()
box.run("sleep 1000 & setsid sleep 1000 & nohup sleep 1000 >/dev/null 2>&1 &")
procs = []
for path in box.cgroups:
    procs += open(path + "/cgroup.procs").read().split()
print(" ".join(box.cgroups), "|", " ".join(procs), flush=True)
time.sleep(1000)
"""


def test_nothing_survives_a_killed_collector():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, cwd=repo)
    cgroups, pids = child.stdout.readline().split("|")
    # (each controller's cgroup lists the same processes; one that was passing through when the
    # lists were read may be gone already: the three sleeps, the shell and init stay)
    pids = sorted({int(p) for p in pids.split()})
    assert sum(alive(p) for p in pids) >= 5
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert wait_gone(pids) == []
    # its empty cgroups are removed by the next machine that starts
    with Sandbox() as box:
        assert box.run("echo fresh") == ("fresh\n", 0)
    assert not any(os.path.exists(c) for c in cgroups.split())


def test_docker_backend():
    ok, why = DockerSandbox.available()
    if not ok:
        pytest.skip(f"DockerSandbox: {why}")
    with DockerSandbox() as box:
        assert box.run("cd /tmp; X=1") == ("", 0)
        assert box.run("echo $X; pwd") == ("1\n/tmp\n", 0)
        assert box.run("sleep 100", timeout=1)[1] == TIMEOUT
        assert box.exec(["bash", "-c", "echo hi"]) == ("hi\n", 0)


# ---- a hostile agent (issue 15): each attack below worked on the sandbox before it had a user
# namespace, a seccomp filter, a cgroup namespace and a host-side launcher


def host_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_root_inside_is_an_unprivileged_uid_outside(box):
    from agentune.sandbox import UID_BASE
    out, _ = box.run("id -u; cat /proc/self/uid_map")
    assert out.split()[:4] == ["0", "0", str(UID_BASE), "65536"], out
    inside = [pid for pid in sandbox_pids(box) if pid != box.proc.pid]   # less the host-side launcher
    assert len(inside) >= 2
    for pid in inside:   # every process of the machine, seen from the host
        status = host_status(pid)
        assert int(status["Uid"].split()[1]) >= UID_BASE, status
    # no capability in the host's namespace: a new user namespace (root with every capability
    # in it), mounting and network configuration are all refused
    for command in ("unshare -Urmn true", "unshare -U true", "ip link add dummy0 type dummy",
                    "mount -t tmpfs none /mnt", "echo 1 > /proc/irq/0/smp_affinity",
                    "(for f in /proc/irq/*/smp_affinity; do echo 1 > $f && exit 0; done; exit 1)",
                    "echo 1 > /proc/sys/vm/drop_caches"):
        out, code = box.run(command + " 2>&1", timeout=10)
        assert code != 0, f"{command}: {out}"


SYSCALL_PROBE = r"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
calls = {"io_uring_setup": (425, 1, buf), "keyctl": (250, 0, -4, 0), "add_key": (248, b"user", b"x", b"y", 1, -4),
         "bpf": (321, 0, buf, 48), "perf_event_open": (298, buf, 0, -1, -1, 0), "kexec_load": (246, 0, 0, 0, 0),
         "unshare(CLONE_NEWUSER)": (272, 0x10000000), "setns": (308, 0, 0), "mount": (165, b"x", b"/mnt", b"tmpfs", 0, 0),
         "ptrace(ATTACH, 1)": (101, 16, 1, 0, 0), "open_tree": (428, -100, b"/", 1)}
for name, (nr, *args) in calls.items():
    result = libc.syscall(nr, *args)
    print(name, "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()])
"""


def test_seccomp_denies_what_a_task_never_needs(box):
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers of x86_64")
    for out, _ in (box.run(f"python3 -c {SYSCALL_PROBE!r}".replace("\\n", "\n"), timeout=20),
                   box.exec(["python3", "-c", SYSCALL_PROBE])):
        results = dict(line.rsplit(" ", 1) for line in out.strip().splitlines())
        assert len(results) == 11 and set(results.values()) == {"EPERM"}, out
    assert box.run("grep Seccomp: /proc/self/status")[0].split()[1] == "2"   # filter mode
    assert box.run("echo still fine") == ("still fine\n", 0)


def test_no_host_cgroup_or_mount_paths_inside(box):
    out, _ = box.run("cat /proc/self/cgroup")
    assert {line.split(":", 2)[2] for line in out.split()} == {"/"}, out
    for name in box.cgroups:
        assert os.path.basename(name) not in out
    out, _ = box.run("cat /proc/self/mountinfo /proc/1/mountinfo /proc/mounts")
    for host_path in (ROOTFS, os.path.dirname(ROOTFS), os.getcwd(), "/sys/fs/cgroup"):
        assert host_path not in out, host_path


def test_cgroups_under_the_collectors_own_with_cpu_limit():
    with open("/proc/self/cgroup") as f:
        own = {name: path for _, names, path in (line.strip().split(":", 2) for line in f) for name in names.split(",")}
    with Sandbox(memory_mb=256, pids=64, cpus=0.25) as box:
        for path in box.cgroups:
            controller = path.split("/")[4] if not os.path.exists("/sys/fs/cgroup/cgroup.controllers") else ""
            parent = os.path.dirname(path)
            assert parent == ("/sys/fs/cgroup/" + controller + own.get(controller or "", own.get("", "/"))).rstrip("/")
        # a busy loop gets a quarter of a CPU (a loaded machine can give it less, never more)
        busy = "python3 -c 'import time\nt = time.time()\nwhile time.time() - t < 2: pass\nprint(time.process_time())'"
        out, code = box.run(busy, timeout=20)
        assert code == 0 and float(out) < 0.25 * 2 + 0.3, out


FORGE = r"""
import os, re, sys
shell = os.getppid()
# 1. the old nonce came from the cgroup's name: try every marker it could make
for line in open("/proc/self/cgroup"):
    for nonce in re.findall(r"[0-9a-f]{16,}", line):
        for seq in range(1, 50):
            sys.stdout.write("\x1e%s:%d:0\x1e" % (nonce, seq))
# 2. read the marker of this very line out of the shell's memory
try:
    maps = open(f"/proc/{shell}/maps").read().splitlines()
    with open(f"/proc/{shell}/mem", "rb") as mem:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if "rw" not in line.split()[1] or end - start > 64 << 20:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            for token in set(re.findall(rb"\\\\036%s:%d\\\\036' '([0-9a-f:]+)'", data)):
                sys.stdout.write("\x1e%s:0\x1e" % token.decode())
except OSError as e:
    print("mem:", e.strerror)
sys.stdout.flush()
"""


def test_end_of_command_marker_cannot_be_forged(box):
    assert box.exec(["python3", "-c", f"open('/tmp/forge.py', 'w').write({FORGE!r})"])[1] == 0
    start = time.monotonic()
    out, code = box.run("python3 /tmp/forge.py; sleep 1.5; (exit 7)", timeout=20)
    assert code == 7 and time.monotonic() - start >= 1.5, (out, code)
    assert box.run("echo next") == ("next\n", 0)   # nothing of the forged line leaks into the next one


TRAP = "#!/usr/bin/dash\nmount -t tmpfs x /mnt 2>/dev/null && echo ESCAPED; grep -h CapEff /proc/self/status; cat /proc/self/uid_map\n"


def test_untrusted_init_script_cannot_get_host_root_through_scratch_copies(box):
    """An init script (self-instruct's are written by a model) replaces the programs the scratch
    copy used to run with the host's capabilities."""
    programs = ["/usr/bin/unshare", "/bin/sh", "/usr/bin/sh", "/usr/sbin/chroot", "/usr/bin/env",
                "/usr/bin/setpriv", "/usr/bin/nsenter", "/usr/bin/bash", "/usr/bin/python3"]
    plant = "; ".join(f"rm -f {p}; printf {TRAP!r} > {p}; chmod +x {p}" for p in programs)
    assert box.exec(["/bin/bash", "-c", plant])[1] == 0
    out, _ = box.exec(["bash", "-c", "true"], scratch=True)
    assert "ESCAPED" not in out
    assert "CapEff" in out and int(out.split("CapEff:")[1].split()[0], 16) >> 21 & 1 == 0   # no CAP_SYS_ADMIN
    assert out.split("CapEff:")[1].split()[1:4] == ["0", str(1 << 20), "65536"]   # the machine's root, not the host's


def test_disk_fill_is_capped_and_other_machines_are_unaffected():
    with Sandbox(memory_mb=256, pids=64, disk_mb=64) as hog, Sandbox(memory_mb=256, pids=64) as other:
        # (the fill gets its own generous timeout: on a loaded machine 64 MB can take seconds)
        out, code = hog.run("dd if=/dev/zero of=/big bs=1M count=200 2>&1 | tail -1; "
                            "head -c 100M /dev/zero > /dev/shm/big", timeout=60)
        assert "No space left" in out, out
        out, _ = hog.run("python3 -c 'x = bytearray(400 << 20)' 2>&1; echo hog alive", timeout=30)
        assert out.endswith("hog alive\n") or "Killed" in out or "Memory" in out
        hog.run(":(){ :|:& };:", timeout=5)   # last: the bomb's processes fill the pids limit
        assert other.run("echo fine; df -m / | tail -1 | awk '{print $2}'")[0].startswith("fine\n")
        assert other.exec(["bash", "-c", "echo exec fine"]) == ("exec fine\n", 0)
        pids = sandbox_pids(hog)
        cgroups = list(hog.cgroups)
        hog.close()
        assert wait_gone(pids) == []
        assert not any(os.path.exists(c) for c in cgroups)
        assert other.run("echo still fine") == ("still fine\n", 0)
