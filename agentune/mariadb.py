"""A private, throwaway MariaDB server for the DB environment's MySQL backend (tests, stage scripts,
the eval): its own data dir, unix socket and port; it dies with the process that started it.

    with MariaDBServer() as server:
        env = DBEnv(**server.settings)
"""
import atexit
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

def _die_with_parent():
    # the server must not outlive the process that started it (kill -9 included); PDEATHSIG
    # fires when the starting *thread* exits, so start servers from the main thread
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def remove_stale_servers(parent):
    """Data dirs of servers that died with a killed parent (kill -9 skips stop())."""
    for path in glob.glob(os.path.join(parent, "agentune-mariadb-*")):
        try:
            pid = int(open(os.path.join(path, "mariadbd.pid")).read())
        except (OSError, ValueError):
            pid = None  # not started yet, or never: only the age tells
        if pid is not None and os.path.exists(f"/proc/{pid}"):
            continue
        if pid is not None or time.time() - os.path.getmtime(path) > 600:
            shutil.rmtree(path, ignore_errors=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mariadbd():
    """Paths of mariadbd and mariadb-install-db, or None when MariaDB is not installed."""
    search = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/usr/bin"
    server = shutil.which("mariadbd", path=search)
    install = shutil.which("mariadb-install-db", path=search) or shutil.which("mysql_install_db", path=search)
    return (server, install) if server and install else None


class MariaDBServer:
    """A throwaway MariaDB server: own data dir in a temp dir, own unix socket and a free port on
    127.0.0.1. The account `agentune` administers the episodes (creates each one's database and
    account, nothing else); each episode's SQL runs as an account of its own.
    `with MariaDBServer() as server: env = DBEnv(**server.settings)`. Stopping it removes
    everything; the server dies with the process that started it."""

    def __init__(self, startup_timeout=60.0):
        self.startup_timeout = startup_timeout
        self.process = None
        self.dir = None

    def start(self):
        import pymysql
        found = find_mariadbd()
        if not found:
            raise RuntimeError("mariadbd not found: install the Debian package mariadb-server (scripts/setup.d/20-apt.sh)")
        mariadbd, install_db = found
        # on a RAM disk when there is one: every CREATE/DROP TABLE syncs files, ~20x slower on disk
        ram = "/dev/shm" if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 1 << 30 else None
        parent = ram or tempfile.gettempdir()
        remove_stale_servers(parent)
        self.dir = tempfile.mkdtemp(prefix="agentune-mariadb-", dir=parent)
        atexit.register(self.stop)
        datadir, self.socket = os.path.join(self.dir, "data"), os.path.join(self.dir, "mariadb.sock")
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        done = subprocess.run([install_db, "--no-defaults", f"--datadir={datadir}", "--skip-test-db",
                               "--auth-root-authentication-method=normal", *as_root],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"mariadb-install-db failed:\n{(done.stdout + done.stderr)[-2000:]}")
        self.port = _free_port()
        self.log = os.path.join(self.dir, "error.log")
        self.process = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={datadir}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--log-error={self.log}",
             f"--pid-file={os.path.join(self.dir, 'mariadbd.pid')}",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
             # a scratch server: small, and no syncing to disk (nothing in it must survive)
             "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--sync-frm=0",
             "--max-connections=500", *as_root],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                root = pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=2, ssl_disabled=True)
                break
            except pymysql.err.MySQLError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
                    self.stop()
                    raise RuntimeError(f"mariadbd did not start:\n{tail}") from None
                time.sleep(0.1)
        # the administering account: the episode databases and accounts, nothing on the server (no
        # FILE, SHUTDOWN, SUPER). Anonymous accounts would shadow the episodes' '%' accounts
        with root.cursor() as cursor:
            cursor.execute("DELETE FROM mysql.global_priv WHERE User = ''")
            cursor.execute("FLUSH PRIVILEGES")
            for host in ("localhost", "127.0.0.1"):
                cursor.execute(f"CREATE USER 'agentune'@'{host}'")
                cursor.execute(f"GRANT ALL ON `agentune\\_%`.* TO 'agentune'@'{host}' WITH GRANT OPTION")
                cursor.execute(f"GRANT CREATE USER ON *.* TO 'agentune'@'{host}'")
        root.close()
        return self

    @property
    def settings(self):
        """DBEnv keyword arguments for this server (the socket; host/port work too)."""
        return dict(backend="mysql", host="127.0.0.1", port=self.port, user="agentune", password="",
                    unix_socket=self.socket)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
