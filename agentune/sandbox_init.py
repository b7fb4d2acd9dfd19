"""The machine's PID 1, run inside the sandbox by the rootfs's own python3 (agentune/sandbox.py
reads this file and starts it with `python3 -c`; it imports nothing of agentune). See the comment
above INIT in agentune/sandbox.py for what it does."""
import ctypes, fcntl, json, os, signal, socket, sys, termios
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)   # PR_SET_DUMPABLE 0
for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
control = socket.socket(fileno=int(sys.argv[1]))
shell = os.fork()
if shell == 0:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    bash = int(sys.argv[2])   # a copy of /usr/bin/bash we cannot read: the shell is non-dumpable
    os.closerange(3, bash)
    os.closerange(bash + 1, 1024)
    os.set_inheritable(bash, False)
    os.execve(bash, ['bash', '--login', '--noediting', '-i'], os.environ)
jobs = {}

def reap(*_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == shell:
            os._exit(0)
        if pid in jobs:
            code = os.waitstatus_to_exitcode(status)
            control.send(json.dumps([jobs.pop(pid), code if code >= 0 else 128 - code]).encode())

signal.signal(signal.SIGCHLD, reap)
while True:
    message, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
    if not message:
        os._exit(0)
    request = json.loads(message)
    if 'kill' in request:
        for pid, job in jobs.items():
            if job == request['kill']:
                os.killpg(pid, signal.SIGKILL)
        continue
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})   # register it before reaping it
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        os.dup2(os.open('/dev/null', os.O_RDONLY), 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[0], 2)
        os.closerange(3, 1024)
        os.chdir('/')
        try:
            os.execvp(request['argv'][0], request['argv'])
        except OSError as e:
            print(f"{request['argv'][0]}: {e.strerror}", file=sys.stderr)
            os._exit(127)
    os.close(fds[0])
    jobs[pid] = request['id']
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
