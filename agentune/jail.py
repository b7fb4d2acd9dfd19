"""The privileged half of the OS sandbox: the host-side launcher that builds a machine and the
scratch copies of it. agentune/sandbox.py runs it as its own process, with the host's python
(`python -I -S jail.py machine|scratch CONFIG`), standard library only.

Everything here runs as host root and never executes or imports a file of the machine: each
mode ends by entering the machine's user namespace (root inside = an unprivileged host uid
range), loading the seccomp filter, dropping to the machine's capability set and only then
executing the machine's own program. Every library it needs (libc, libseccomp) is loaded
before it enters the machine's mount namespace.

machine: new mount/pid/net/uts/ipc/cgroup namespaces, owned by the host's user namespace (so
    root inside can never mount, configure the network or rename the machine: those checks
    are made against the host's namespace), joined to the machine's cgroups; an overlay of an
    id-mapped view of the rootfs on a size-capped tmpfs, /proc with /proc/sys, /proc/irq, ...
    read-only and the host-revealing files masked, read-only /sys, a minimal /dev; pivot_root;
    then the user namespace, seccomp, capabilities, and exec the rootfs's python3 as PID 1.
scratch: joins a running machine's namespaces; in a private mount namespace, a copy-on-write
    overlay of the machine's root on a fresh tmpfs, chroot into it; then as above.
"""
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long
try:
    libseccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    libseccomp.seccomp_init.restype = ctypes.c_void_p
    libseccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    libseccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    libseccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                                  ctypes.c_uint, ctypes.c_void_p]
    libseccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    libseccomp.seccomp_release.argtypes = [ctypes.c_void_p]
except OSError:
    libseccomp = None

CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP = 0x80, 0x20000, 0x02000000
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER = 0x04000000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
NAMESPACE_FLAGS = [CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                   CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_DUMPABLE, PR_CAP_AMBIENT = 1, 24, 4, 47
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442   # the same on every arch
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[os.uname().machine]
OPEN_TREE_CLONE, AT_EMPTY_PATH, AT_RECURSIVE, MOVE_MOUNT_F_EMPTY_PATH = 1, 0x1000, 0x8000, 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_IDMAP = 1, 0x00100000

CAP_NUMBERS = {"chown": 0, "dac_override": 1, "fowner": 3, "fsetid": 4, "kill": 5, "setgid": 6,
               "setuid": 7, "setpcap": 8, "net_bind_service": 10, "net_raw": 13, "sys_chroot": 18,
               "setfcap": 31}
# What a task never needs, denied with EPERM (the rest of the kernel stays as it is): kernel
# keyrings, io_uring, eBPF, perf, kexec and modules, every way to mount or to enter or make a
# namespace (nested user namespaces included), tracing other processes (which would reach the
# shell's and init's memory and sockets), the clock, swap, reboot, accounting, quotas.
DENIED = ["keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
          "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "init_module", "finit_module",
          "delete_module", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen",
          "fsmount", "fsconfig", "fspick", "mount_setattr", "setns", "ptrace", "process_vm_readv",
          "process_vm_writev", "pidfd_getfd", "kcmp", "userfaultfd", "open_by_handle_at",
          "name_to_handle_at", "lookup_dcookie", "settimeofday", "clock_settime", "clock_adjtime",
          "adjtimex", "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog",
          "iopl", "ioperm", "vhangup", "uselib", "nfsservctl", "fanotify_init", "kexec_file_load"]
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO = 0x7FFF0000, 0x00050000
SCMP_CMP_MASKED_EQ = 7


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def check(result, what):
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def mount(source, target, fstype, flags=0, data=None):
    enc = lambda s: s.encode() if isinstance(s, str) else s   # noqa: E731
    check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount {fstype or source} on {target}")


def bind_ro(path):
    mount(path, path, None, MS_BIND | MS_REC)
    mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def prctl(option, arg2=0):
    check(libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0), f"prctl {option}")


def die_with_parent(parent):
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def join_cgroups(dirs):
    for path in dirs:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def make_userns(base, count):
    """A user namespace mapping 0..count-1 inside to base.. outside -> an fd for it. A child
    creates it (a process cannot map a range for itself); we write its maps as host root."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r), os.close(done_w)
        check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        os.write(ready_w, b"x")
        os.read(done_r, 1)
        os._exit(0)
    os.close(ready_w), os.close(done_r)
    if os.read(ready_r, 1) != b"x":
        raise OSError("the user namespace could not be created")
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(f"0 {base} {count}\n")
    fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    os.write(done_w, b"x")
    os.waitpid(pid, 0)
    os.close(ready_r), os.close(done_w)
    return fd


def idmapped_bind(source, target, userns_fd):
    """Mount source on target read-only, its files' owners shifted into the user namespace."""
    fd = check(libc.syscall(SYS_OPEN_TREE, -100, source.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE),
               f"open_tree {source}")
    attr = struct.pack("QQQQ", MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, 0, 0, userns_fd)
    check(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, len(attr)),
          f"mount_setattr(MOUNT_ATTR_IDMAP) on {source} (needs Linux >= 5.12 and a filesystem that supports id-mapped mounts)")
    check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
          f"move_mount to {target}")
    os.close(fd)


def seccomp_filter():
    """Load the filter (DENIED, and no new namespaces through unshare/clone; clone3 says ENOSYS
    so that libc falls back to clone, whose flags we can see)."""
    if libseccomp is None:
        raise OSError("libseccomp.so.2 not found (apt-get install libseccomp2)")
    ctx = libseccomp.seccomp_init(SCMP_ACT_ALLOW)
    eperm = SCMP_ACT_ERRNO | 1
    for name in DENIED:
        nr = libseccomp.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:
            check(libseccomp.seccomp_rule_add_array(ctx, eperm, nr, 0, None), f"seccomp rule {name}")
    for name in ("unshare", "clone"):
        nr = libseccomp.seccomp_syscall_resolve_name(name.encode())
        for flag in NAMESPACE_FLAGS:   # arg 0 is the flags for both on x86_64 and aarch64
            cmp = ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag)
            check(libseccomp.seccomp_rule_add_array(ctx, eperm, nr, 1, ctypes.byref(cmp)), f"seccomp rule {name}")
    nr = libseccomp.seccomp_syscall_resolve_name(b"clone3")
    if nr >= 0:
        check(libseccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO | 38, nr, 0, None), "seccomp rule clone3")
    rc = libseccomp.seccomp_load(ctx)
    libseccomp.seccomp_release(ctx)
    if rc < 0:
        raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")


def become_machine_root(userns_fd, caps):
    """Enter the machine's user namespace as its root, with the seccomp filter and only `caps`.
    After this nothing of the host's privileges is left; exec what the machine says."""
    check(libc.setns(userns_fd, CLONE_NEWUSER), "setns(user namespace)")
    os.close(userns_fd)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    seccomp_filter()   # while we still have CAP_SYS_ADMIN (in the namespace): no no_new_privs needed
    keep = [CAP_NUMBERS[c] for c in caps]
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, 4)   # PR_CAP_AMBIENT_CLEAR_ALL
    mask = sum(1 << c for c in keep)
    header = struct.pack("Ii", 0x20080522, 0)   # _LINUX_CAPABILITY_VERSION_3, this process
    data = struct.pack("IIIIII", mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
    check(libc.capset(header, data), "capset")


def set_sysctl(name, value):
    with open(f"/proc/sys/{name}", "w") as f:
        f.write(value)


def loopback_up():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifreq = struct.pack("16sh14x", b"lo", 0)
    flags = struct.unpack("16sh14x", fcntl.ioctl(sock, 0x8913, ifreq))[1]   # SIOCGIFFLAGS
    fcntl.ioctl(sock, 0x8914, struct.pack("16sh14x", b"lo", flags | 1))   # SIOCSIFFLAGS |= IFF_UP
    sock.close()


# Docker's masked and read-only /proc paths
PROC_MASKED = ["kcore", "keys", "timer_list", "latency_stats", "sched_debug", "timer_stats"]
PROC_MASKED_DIRS = ["acpi", "asound", "scsi", "driver", "tty/driver"]
PROC_READONLY = ["sys", "irq", "bus", "fs", "sysrq-trigger"]


def machine(cfg):
    die_with_parent(cfg["parent"])
    join_cgroups(cfg["cgroups"])
    base, count = cfg["uid_base"], cfg["uid_count"]
    userns = make_userns(base, count)   # here, where /proc still shows our pid namespace
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP),
          "unshare(mount, pid, net, uts, ipc, cgroup namespaces)")
    child = os.fork()
    if child:   # stays outside: when it dies (killed by close() or with the collector), so does PID 1
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    die_with_parent(0)   # we are PID 1 of the new pid namespace: our parent is outside it
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("sandbox", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['disk_mb']}m,mode=0755")
    for d in ("lower", "upper", "work", "root"):
        os.mkdir(f"/tmp/{d}")
    for d in ("upper", "work"):
        os.chown(f"/tmp/{d}", base, base)
    idmapped_bind(cfg["rootfs"], "/tmp/lower", userns)
    mount("overlay", "/tmp/root", "overlay", 0, "lowerdir=/tmp/lower,upperdir=/tmp/upper,workdir=/tmp/work")
    os.chdir("/tmp/root")
    # hidepid=invisible: the processes a reader may not inspect (init and the shell, which are
    # non-dumpable) are not listed, so that `find /` and `ps` see no "Permission denied"
    mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
    set_sysctl("net/ipv4/ip_unprivileged_port_start", "0")   # root inside binds low ports, pings
    set_sysctl("net/ipv4/ping_group_range", "0 2147483647")
    for name in PROC_READONLY:
        if os.path.exists(f"proc/{name}"):
            bind_ro(f"proc/{name}")
    for name in PROC_MASKED:
        if os.path.exists(f"proc/{name}"):
            mount("/dev/null", f"proc/{name}", None, MS_BIND)
    for name in PROC_MASKED_DIRS:
        if os.path.isdir(f"proc/{name}"):
            mount("masked", f"proc/{name}", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
    mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in ("firmware", "kernel/security"):
        if os.path.isdir(f"sys/{name}"):
            mount("masked", f"sys/{name}", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
    mount("dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, f"mode=0755,size=1m,uid={base},gid={base}")
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"dev/{node}", "w").close()
        mount(f"/dev/{node}", f"dev/{node}", None, MS_BIND)
    for d in ("pts", "shm"):
        os.mkdir(f"dev/{d}")
        os.chown(f"dev/{d}", base, base)
    mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, f"newinstance,ptmxmode=0666,mode=0620,gid={base + 5}")
    mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size=64m,mode=1777,uid={base},gid={base}")
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"dev/{link}")
        os.lchown(f"dev/{link}", base, base)
    # the shell's bash: a copy only the host can read, outside the machine's tree, that init
    # executes through this fd. Executing an unreadable file makes the shell non-dumpable, so the
    # agent's commands cannot read its memory (its end-of-command markers) or its fds via /proc
    # (on a tmpfs of its own: the machine's disk usage, which tasks ask about, stays as it was)
    os.mkdir("/tmp/shell")
    mount("shell", "/tmp/shell", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0711")
    with open(os.path.join(cfg["rootfs"], "usr/bin/bash"), "rb") as src, open("/tmp/shell/bash", "wb") as dst:
        dst.write(src.read())
    os.chmod("/tmp/shell/bash", 0o111)
    shell_fd = os.open("/tmp/shell/bash", os.O_PATH)
    os.set_inheritable(shell_fd, True)
    check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")
    socket.sethostname("sandbox")
    loopback_up()
    become_machine_root(userns, cfg["caps"])
    os.execve("/usr/bin/python3", ["python3", "-I", "-S", "-c", cfg["init"], str(cfg["control_fd"]), str(shell_fd)],
              cfg["env"])


def scratch(cfg):
    """argv in a copy-on-write copy of the running machine cfg['init_pid'] (see the docstring)."""
    die_with_parent(cfg["parent"])
    join_cgroups(cfg["cgroups"])
    pid = cfg["init_pid"]
    ns = {kind: os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
          for kind in ("mnt", "pid", "net", "uts", "ipc", "cgroup", "user")}
    check(libc.setns(ns["mnt"], CLONE_NEWNS), "setns(mount namespace)")   # cwd and root: the machine's /
    check(libc.unshare(CLONE_NEWNS), "unshare(mount namespace)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # proc, dev and sys of the machine, cloned before the tmpfs covers /proc (a mount point: the
    # machine cannot have replaced it with a link); the overlay is made on that tmpfs
    trees = {name: check(libc.syscall(SYS_OPEN_TREE, -100, f"/{name}".encode(),
                                      OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE), f"open_tree /{name}")
             for name in ("proc", "dev", "sys")}
    top = "/proc"
    mount("scratch", top, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['disk_mb']}m,mode=0700")
    for d in ("upper", "work", "root"):
        os.mkdir(f"{top}/{d}")
    for d in ("upper", "work"):
        os.chown(f"{top}/{d}", cfg["uid_base"], cfg["uid_base"])
    mount("overlay", f"{top}/root", "overlay", 0, f"lowerdir=/,upperdir={top}/upper,workdir={top}/work")
    os.chdir(f"{top}/root")
    for name, fd in trees.items():
        check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, name.encode(), MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {name}")
        os.close(fd)
    os.chroot(".")
    os.chdir("/")
    for kind, flag in (("pid", CLONE_NEWPID), ("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS),
                       ("ipc", CLONE_NEWIPC), ("cgroup", CLONE_NEWCGROUP)):
        check(libc.setns(ns[kind], flag), f"setns({kind} namespace)")
    for fd in (1, 2):   # our output pipe: root inside may reopen it through /dev/stdout
        os.fchown(fd, cfg["uid_base"], cfg["uid_base"])
    become_machine_root(ns["user"], cfg["caps"])
    child = os.fork()   # a member of the machine's pid namespace
    if child:
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):   # python ignores them; the program must not
        signal.signal(sig, signal.SIG_DFL)
    program = cfg["argv"][0]
    for directory in ([""] if "/" in program else cfg["env"]["PATH"].split(":")):
        path = os.path.join(directory, program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            os.execve(path, cfg["argv"], cfg["env"])
    print(f"{program}: No such file or directory", file=sys.stderr)
    os._exit(127)


if __name__ == "__main__":
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    sys.path.clear()   # from here on no import can find a module: none may come from the machine's files
    try:
        {"machine": machine, "scratch": scratch}[mode](config)
    except BaseException as e:   # reported without reading any source file
        tb = e.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        print(f"sandbox {mode} setup: {type(e).__name__}: {e} (agentune/jail.py:{tb.tb_lineno})", file=sys.stderr, flush=True)
        os._exit(125)
