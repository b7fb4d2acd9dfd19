"""A disposable, isolated Linux machine per OS-interaction episode, driven through a persistent
interactive bash as root.

    with Sandbox() as box:
        box.run("cd /tmp && export X=1")          # -> (output, exit_code); state carries over
        box.run("echo $X; pwd")                   # -> ("1\\n/tmp\\n", 0)
        box.exec(["python3", "-c", code, arg])    # an independent process, like `docker exec`

Sandbox (default; needs root, overlayfs, id-mapped mounts (Linux >= 5.19), libseccomp and
cgroups, no Docker): the Debian rootfs that scripts/build_rootfs.sh debootstraps once is, through
an id-mapped read-only mount, the lower layer of a kernel overlayfs whose upper layer is a
size-capped tmpfs. agentune/jail.py (host side, the host's python, never a file of the machine)
builds it: fresh mount/pid/net/uts/ipc/cgroup namespaces owned by the host's user namespace,
pivot_root, only a loopback network, read-only /proc/sys, /proc/irq, /sys, Docker's masked /proc
paths, pids + memory + cpu limits in cgroups made under the collector's own; then the machine
runs in a user namespace (root inside is host uid UID_BASE, unprivileged), under a seccomp filter
(no keyrings, io_uring, bpf, perf, kexec, modules, mounts, namespaces, ptrace), with a
container-like capability set that only counts inside that user namespace. Its namespace init is
the only parent of everything inside: killing it (close(), or the kernel when the collector dies,
through PR_SET_PDEATHSIG) kills every process in the machine, which frees the mount namespace and
with it the tmpfs. The death signal follows the thread that started the machine (a Linux rule):
start it in the thread that lives as long as it does.

exec() runs checkers and init scripts as independent processes, started by the machine's own init
over a socket, so they are exactly as unprivileged as the agent. Scratch copies are built by
jail.py from the host side and run the same way: nothing with host privileges ever runs a program
from the machine's files.

DockerSandbox: the same interface on a docker engine, for machines that have one.

Commands go to one bash on a pseudo-terminal, like a person typing (AgentBench's container shell
is also a tty): cwd, variables, functions and background jobs persist between commands. Each
command is sent as one `eval $'...'` line followed by a printf of a marker with the exit status,
so a syntax error cannot swallow the marker. The marker is fresh random per line and nothing
inside can read it: the shell is non-dumpable (it is an unreadable copy of bash), ptrace is
denied, and the cgroup namespace hides the cgroup names. A command that runs past its timeout is interrupted
with Ctrl-C (then SIGKILL to its process group if it ignores that) and the shell lives on.
"""
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time

from agentune.paths import CACHE_DIR

ROOTFS = os.path.join(CACHE_DIR, "rootfs")
TIMEOUT = -1                  # exit code run() returns when a command was interrupted at its timeout
MAX_OUTPUT = 1 << 20          # bytes of one command's output kept (AgentBench shows 800 characters)
# Docker's default capability set minus mknod (we have no device cgroup to make device nodes
# harmless) and audit_write: enough to chown, setuid (sudo, su, useradd), kill, chroot, bind low
# ports and ping; not enough to mount, load modules, trace processes or touch the clock.
CAPS = ["chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
        "setfcap", "net_bind_service", "net_raw", "sys_chroot"]
# Root inside the machine is this host uid (and the next UID_COUNT - 1 are its other users):
# an unprivileged uid range, outside any real user's, shared by all machines (they cannot see
# one another: separate pid, mount, ipc and net namespaces).
UID_BASE, UID_COUNT = 1 << 20, 65536
JAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jail.py")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "TERM": "dumb", "PAGER": "cat", "LANG": "C.UTF-8", "HOSTNAME": "sandbox", "USER": "root"}
# quiet, prompt-less, history-less shell; raw tty (no echo, no \r\n) but Ctrl-C still interrupts
SHELL_SETUP = ("stty -echo -icanon -onlcr isig noflsh 2>/dev/null; set +o emacs +o vi +o history +H; "
               "PS1=''; PS2=''; unset PROMPT_COMMAND HISTFILE")


class SandboxError(RuntimeError):
    """The sandbox could not start, or its shell died or stopped responding."""


def bash_quote(text):
    """text as one bash $'...' word: exact bytes, no expansion, no newline in the result."""
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


class Shell:
    """The persistent-bash protocol over a pty master; the backends say how to start and stop."""

    def __init__(self):
        self.master = None        # pty master fd of the machine's shell
        self.proc = None          # the host process whose death takes the machine down
        self.alive = False
        self.seq = 0
        self.shell_pgrp = None    # the foreground process group when the shell is idle
        self.unfinished = []      # markers of interrupted lines, still to come and be dropped
        self.tty_owner = None     # host uid to own the shell's tty (the machine's root)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def _spawn_shell(self, argv, env=None, pass_fds=()):
        """Start argv (which ends in an interactive bash) on a fresh pty and wait for its prompt."""
        self.master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)   # lflag: no echo, raw input
        attrs[3] |= termios.NOFLSH            # Ctrl-C must not discard the line we send after it
        attrs[1] &= ~termios.OPOST                                           # oflag: keep \n as is
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        if self.tty_owner is not None:
            os.fchown(slave, self.tty_owner, self.tty_owner)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, pass_fds=pass_fds)
        os.close(slave)
        self.alive = True
        output, code = self._send(SHELL_SETUP, timeout=30)
        if code is None:
            self.close()
            raise SandboxError(f"the sandbox shell did not start: {output[-2000:]!r}")

    def run(self, command, timeout=30, interrupt=True):
        """Run a command in the persistent shell -> (output, exit_code); stdout and stderr are
        interleaved as on a terminal. At the timeout the command is interrupted and exit_code is
        TIMEOUT (-1). interrupt=False leaves it running in the foreground instead, as a task's
        `start` command like `su - jack` must be (later commands then go to it, as on a
        terminal). Raises SandboxError when the shell is gone (e.g. the command ran `exit`)."""
        if not self.alive:
            raise SandboxError("the sandbox shell is not running")
        output, code = self._send(f"eval {bash_quote(command)}", timeout)
        if code is not None:
            return output, code
        if not interrupt:
            # if what runs now is a shell (su - user), make it as quiet as ours; harmless if not
            more, _ = self._send(SHELL_SETUP, timeout=2)
            return output + more, TIMEOUT
        # Interrupt like a person would, then make sure the shell is back at its prompt.
        os.write(self.master, b"\x03")
        time.sleep(0.1)   # let SIGINT land before the next line, or a `read` would take that line
        if not self._wait_foreground_is_shell(1.0):
            self._kill_foreground()   # it ignores Ctrl-C
            self._wait_foreground_is_shell(2.0)
        more, code = self._send("true", timeout=10)
        if code is None:
            self.close()
            raise SandboxError("the sandbox shell stopped responding after an interrupted command")
        return output + more, TIMEOUT

    def _wait_foreground_is_shell(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if os.tcgetpgrp(self.master) == self.shell_pgrp:
                    return True
            except OSError:
                return False
            time.sleep(0.01)
        return False

    def _send(self, line, timeout):
        """Send one command line plus the exit-status marker; read up to the marker.
        -> (output, exit_code), or (output so far, None) at the timeout."""
        self.seq += 1
        marker = secrets.token_hex(16)   # fresh per line: one seen or guessed says nothing of the next
        os.write(self.master, f"{line}; printf '\\036%s:%d\\036' '{marker}' \"$?\"\n".encode())
        pattern = re.compile(rb"\x1e" + marker.encode() + rb":(-?\d+)\x1e")
        stale = re.compile(rb"\x1e(?:" + "|".join(self.unfinished + [marker + "x"]).encode() + rb"):-?\d+\x1e")
        buf = b""
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(buf)
            if match:
                self.shell_pgrp = os.tcgetpgrp(self.master)   # the shell (maybe a nested one) is idle
                out = stale.sub(b"", buf[:match.start()])
                return self._decode(out), int(match.group(1))
            left = deadline - time.monotonic()
            if left <= 0:
                self.unfinished = self.unfinished[-100:] + [marker]
                return self._decode(stale.sub(b"", buf)), None
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:       # EIO: every holder of the pty slave is gone
                chunk = b""
            if not chunk:
                self.alive = False
                self.close()
                raise SandboxError(f"the sandbox shell exited; last output: {self._decode(buf)[-500:]!r}")
            buf += chunk
            if len(buf) > MAX_OUTPUT + 4096:   # keep the head, plus a tail where the marker will be
                buf = buf[:MAX_OUTPUT] + buf[-4096:]

    def _kill_foreground(self):
        try:
            os.killpg(os.tcgetpgrp(self.master), signal.SIGKILL)
        except OSError:
            pass

    @staticmethod
    def _decode(data):
        return data.decode("utf-8", errors="replace").replace("\r\n", "\n")

    def close(self):
        raise NotImplementedError


class Sandbox(Shell):
    """Overlayfs + namespaces + pivot_root machine (see the module docstring). Needs root."""

    def __init__(self, rootfs=ROOTFS, memory_mb=1024, disk_mb=1024, pids=512, cpus=1.0):
        super().__init__()
        self.rootfs, self.memory_mb, self.disk_mb, self.pids, self.cpus = rootfs, memory_mb, disk_mb, pids, cpus
        self.name = f"agentune-sb-{os.getpid()}-{secrets.token_hex(6)}"   # nothing of the shell's markers
        self.tty_owner = UID_BASE
        self.cgroups = []
        self.init_pid = None      # host pid of the namespace's init
        self.control = None       # socket to the init, which starts exec() processes for us
        self.exec_lock = threading.Lock()
        self.exec_seq = 0

    @staticmethod
    def available(rootfs=ROOTFS):
        """(True, '') if this machine can run sandboxes, else (False, why and what to do)."""
        if os.geteuid() != 0:
            return False, "the OS sandbox needs root (namespaces, overlayfs, cgroups); run as root or use DockerSandbox"
        if not os.path.exists(os.path.join(rootfs, ".agentune-rootfs")):
            return False, f"no rootfs in {rootfs}; build it with: bash scripts/build_rootfs.sh"
        return True, ""

    def start(self):
        ok, why = self.available(self.rootfs)
        if not ok:
            raise SandboxError(why)
        self.cgroups = make_cgroups(self.name, self.memory_mb, self.pids, self.cpus)
        self.control, init_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # the launcher dies with this thread (PR_SET_PDEATHSIG, even on kill -9 of the collector);
        # the machine's PID 1 dies with the launcher, and everything inside with PID 1
        config = {"parent": os.getpid(), "cgroups": self.cgroups, "rootfs": self.rootfs,
                  "disk_mb": self.disk_mb, "uid_base": UID_BASE, "uid_count": UID_COUNT, "caps": CAPS,
                  "init": INIT, "control_fd": init_end.fileno(), "env": ENV}
        try:
            self._spawn_shell(jail_argv("machine", config), env={}, pass_fds=[init_end.fileno()])
        finally:
            init_end.close()
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            self.init_pid = int(f.read().split()[0])

    def exec(self, argv, timeout=60, scratch=False):
        """Run argv as an independent process in the machine (not through the shell), as root in
        /, with stdout+stderr captured -> (output, exit_code), exit_code TIMEOUT at the timeout.
        The machine's init starts it, so it is as unprivileged as the agent's shell: safe to run
        after the agent has changed any file. scratch=True runs it in a throwaway copy-on-write
        copy of the machine's files (the fresh copy expected answers come from); that needs
        privileges inside the machine, so it is only allowed before the shell ran any command."""
        if not self.alive:
            raise SandboxError("the sandbox is not running")
        if scratch:
            return self._exec_scratch(argv, timeout)
        with self.exec_lock:
            self.exec_seq += 1
            read_end, write_end = os.pipe()
            os.fchown(write_end, UID_BASE, UID_BASE)   # root inside may reopen it as /dev/stdout
            try:
                socket.send_fds(self.control, [json.dumps({"id": self.exec_seq, "argv": list(argv)}).encode()],
                                [write_end])
            finally:
                os.close(write_end)
            with os.fdopen(read_end, "rb", buffering=0) as pipe:
                return self._collect(pipe, timeout)

    def _collect(self, pipe, timeout):
        """The output of an exec() job and its exit code. Output is read until the job exits (plus
        what is left in the pipe), not until EOF: a child it left in the background may hold the
        pipe open for ever."""
        output, code, eof = b"", None, False
        deadline = time.monotonic() + timeout
        while code is None or (not eof and time.monotonic() < deadline):
            waiting_for = ([] if eof else [pipe]) + ([self.control] if code is None else [])
            ready = select.select(waiting_for, [], [], max(0, deadline - time.monotonic()))[0]
            if not ready and code is None:   # timed out: kill its process group, keep its output
                self.control.send(json.dumps({"kill": self.exec_seq}).encode())
                self._exec_status(10)
                code = TIMEOUT
            elif self.control in ready:
                code = self._exec_status(10)
            if code is not None and self.control in waiting_for:
                deadline = time.monotonic() + 0.05   # it has exited: only what is already there
            if pipe in ready:
                chunk = pipe.read(65536)
                eof = not chunk
                output += chunk[:max(0, MAX_OUTPUT - len(output))]
        return self._decode(output), code

    def _exec_status(self, timeout):
        self.control.settimeout(timeout)
        try:
            _job, code = json.loads(self.control.recv(4096))
        except (OSError, ValueError):
            self.close()
            raise SandboxError("the sandbox's init stopped answering (the machine is gone)") from None
        return code

    def _exec_scratch(self, argv, timeout):
        if self.seq > 1:   # the first command is our shell setup
            raise SandboxError("scratch copies need privileges inside the machine, so they are only "
                               "made before its shell has run any command (after that its files are untrusted)")
        config = {"parent": os.getpid(), "cgroups": self.cgroups, "init_pid": self.init_pid,
                  "disk_mb": 256, "uid_base": UID_BASE, "caps": CAPS, "argv": list(argv), "env": ENV}
        cmd = jail_argv("scratch", config)
        env = {}
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return self._decode(out[:MAX_OUTPUT]), proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return self._decode(out[:MAX_OUTPUT]), TIMEOUT

    def close(self):
        """Kill the machine: every process in it, its mounts and its tmpfs. Idempotent."""
        self.alive = False
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)   # unshare; --kill-child takes the init along
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self.control is not None:
            self.control.close()
            self.control = None
        remove_cgroups(self.cgroups)
        self.cgroups = []


# The machine's PID 1 (the rootfs's python3, started by agentune/jail.py inside the user namespace,
# with the seccomp filter and the capabilities already dropped; it makes itself non-dumpable so
# that the agent's processes cannot read or write its memory or take its socket): start the interactive
# bash as a session leader on the pty; start the processes exec() asks for on the control socket
# (argv + the pipe for their output) and answer with their exit codes; reap every orphan (we are
# init). It ends when the shell ends or the host's end of the socket closes, and then the kernel
# kills whatever is left in the namespace.
# (kept in its own file, agentune/sandbox_init.py, and passed to the machine's python3 as text)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_init.py"), encoding="utf-8") as _f:
    INIT = _f.read()


# ---- cgroups: pids, memory and CPU limits per machine, made under the collector's own cgroups
# (a machine stays inside a slurm job's limits): cgroup v2, or v1 pids + memory (+ cpu)

CGROUP_ROOT = "/sys/fs/cgroup"
CPU_PERIOD_US = 100000


def _own_cgroups():
    """-> [(dir of this process's cgroup, {limit file: kind})] for the hierarchy in use."""
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):   # v2
        own = CGROUP_ROOT + next(path for n, _, path in lines if n == "0")
        _enable_controllers(own)
        return [(own, {"pids.max": "pids", "memory.max": "memory", "memory.swap.max": "zero", "cpu.max": "cpu2"})]
    paths = {name: path for _, names, path in lines for name in names.split(",")}
    if os.path.isdir(f"{CGROUP_ROOT}/pids") and os.path.isdir(f"{CGROUP_ROOT}/memory"):   # v1
        parents = [(f"{CGROUP_ROOT}/pids{paths.get('pids', '/')}", {"pids.max": "pids"}),
                   (f"{CGROUP_ROOT}/memory{paths.get('memory', '/')}",
                    {"memory.limit_in_bytes": "memory", "memory.memsw.limit_in_bytes": "memory"})]
        if os.path.isdir(f"{CGROUP_ROOT}/cpu"):
            parents.append((f"{CGROUP_ROOT}/cpu{paths.get('cpu', '/')}", {"cpu.cfs_quota_us": "cpu1"}))
        return [(parent.rstrip("/"), limits) for parent, limits in parents]
    raise SandboxError("no usable cgroup hierarchy (need cgroup v2, or v1 with the pids and memory "
                       "controllers mounted under /sys/fs/cgroup) for the sandbox's limits")


def _enable_controllers(own):
    """cgroup v2: let our cgroup's children have pids, memory and cpu limits. A non-root cgroup
    with processes in it cannot (the "no internal processes" rule): then this process moves to
    a leaf of its own first, as systemd's delegation asks."""
    try:
        with open(f"{own}/cgroup.subtree_control", "w") as f:
            f.write("+pids +memory +cpu")
    except OSError as e:
        if e.errno != 16:   # EBUSY
            raise
        os.makedirs(f"{own}/agentune-collector", exist_ok=True)
        with open(f"{own}/agentune-collector/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        with open(f"{own}/cgroup.subtree_control", "w") as f:
            f.write("+pids +memory +cpu")


def make_cgroups(name, memory_mb, pids, cpus=1.0):
    """Create this machine's cgroups with its limits; also remove empty ones of machines whose
    collector was killed before it could clean up."""
    dirs = []
    quota = int(cpus * CPU_PERIOD_US)
    try:
        for parent, limits in _own_cgroups():
            remove_cgroups([os.path.join(parent, d) for d in os.listdir(parent)
                            if d.startswith("agentune-sb-") and not _pid_alive(d)])
            path = os.path.join(parent, name)
            os.mkdir(path)
            dirs.append(path)
            values = {"pids": str(pids), "memory": str(memory_mb << 20), "zero": "0",
                      "cpu1": str(quota), "cpu2": f"{quota} {CPU_PERIOD_US}"}
            for file, kind in limits.items():
                if os.path.exists(os.path.join(path, file)):
                    with open(os.path.join(path, file), "w") as f:
                        f.write(values[kind])
    except (OSError, StopIteration) as e:
        remove_cgroups(dirs)
        raise SandboxError(f"cannot set up the sandbox's cgroups: {e}") from None
    return dirs


def jail_argv(mode, config):
    """The host-side launcher (agentune/jail.py) on this host's python, isolated from the
    environment and from site-packages."""
    return [sys.executable, "-I", "-S", JAIL, mode, json.dumps(config)]


def _pid_alive(cgroup_name):
    """agentune-sb-<collector pid>-<token>: is that collector process still running?"""
    try:
        os.kill(int(cgroup_name.split("-")[2]), 0)
        return True
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def remove_cgroups(dirs):
    """rmdir the cgroups once their processes are gone (the kernel kills them asynchronously)."""
    for path in dirs:
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:   # EBUSY: processes still exiting
                if time.monotonic() > deadline:
                    _kill_all(path)
                    deadline = time.monotonic() + 5
                time.sleep(0.005)


def _kill_all(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    except FileNotFoundError:
        pass


class DockerSandbox(Shell):
    """The same machine on a docker engine: a throwaway container (no network, pids/memory limits,
    Docker's default capabilities) and `docker exec -it bash` on our pty as the persistent shell.
    The image should hold what the rootfs holds; AgentBench's own is built with
    `docker build -t local-os/default -f res/dockerfiles/default res/dockerfiles` (in os_interaction/)."""

    def __init__(self, image="local-os/default", memory_mb=1024, pids=512):
        super().__init__()
        self.image, self.memory_mb, self.pids = image, memory_mb, pids
        self.container = None

    @staticmethod
    def available():
        """(True, '') if a docker engine answers, else (False, why)."""
        if shutil.which("docker") is None:
            return False, "no docker command on this machine"
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return False, f"no docker engine answers: {result.stderr.strip()[:200]}"
        return True, ""

    def _docker_run(self, image, argv, detach, timeout=None):
        return subprocess.run(
            ["docker", "run", "--rm", "--network=none", f"--pids-limit={self.pids}",
             f"--memory={self.memory_mb}m", "--hostname=sandbox", "--label=created_by=agentune",
             *[f"--env={k}={v}" for k, v in ENV.items()], *(["-d"] if detach else []), image, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE if detach else subprocess.STDOUT, timeout=timeout)

    def start(self):
        result = self._docker_run(self.image, ["sleep", "infinity"], detach=True)
        if result.returncode != 0:
            raise SandboxError(f"docker run {self.image} failed: {result.stderr.decode().strip()}")
        self.container = result.stdout.decode().strip()
        self._spawn_shell(["docker", "exec", "-it", *[f"--env={k}={v}" for k, v in ENV.items()],
                           self.container, "bash", "--login", "--noediting", "-i"])

    def _kill_foreground(self):
        os.write(self.master, b"\x03")   # the local foreground is the docker CLI: never kill that

    def exec(self, argv, timeout=60, scratch=False):
        """As Sandbox.exec; scratch=True runs in a new container from a snapshot of this one's
        files (`docker commit`)."""
        image = None
        try:
            if scratch:
                image = subprocess.run(["docker", "commit", self.container], capture_output=True,
                                       text=True, check=True).stdout.strip()
                result = self._docker_run(image, argv, detach=False, timeout=timeout)
            else:
                result = subprocess.run(["docker", "exec", self.container, *argv], timeout=timeout,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            return self._decode(result.stdout[:MAX_OUTPUT]), result.returncode
        except subprocess.TimeoutExpired as e:
            return self._decode((e.output or b"")[:MAX_OUTPUT]), TIMEOUT
        finally:
            if image:
                subprocess.run(["docker", "rmi", "-f", image], capture_output=True)

    def close(self):
        self.alive = False
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)
            self.container = None
