"""Throwaway PostgreSQL clusters of a suite's own, beside the suites' shared
cluster: for tests that need a server configuration of their own
(shared_preload_libraries, a standby) or that stop, crash or promote a whole
server.

    c = Cluster("worker", ["shared_preload_libraries = 'campus_sync'"])
    cls.addClassCleanup(c.destroy)      # before init: runs even if setUpClass fails
    c.init()
    c.start()
    conn = c.connect("postgres")
    ...

Each cluster lives in $RUN_DIR/clusters/NAME/: data/ (its PGDATA), server.log
(its server log) and its Unix socket (a socket directory of its own;
listen_addresses = '', so no TCP port is opened; the port number only names
the socket file).  Its tools run as the postgres OS user from / (the server
may not read the caller's cwd), as test/lib.sh runs them.

Under test/sanitize.sh the suites' server is started through a wrapper,
$RUN_DIR/server-bin/postgres, that puts the sanitizer runtimes into the
server's environment; when it exists these clusters start through it too
(pg_ctl -p; a restart reuses it through postmaster.opts; start() and
restart() check that the postmaster runs it), and sanitize.sh scans every
server log, these too (cs_server_logs in test/lib.sh: $RUN_DIR/postgres.log
and every *.log under $RUN_DIR/clusters/).

destroy() stops the server with -m immediate and removes the data directory;
the log is kept for sanitize.sh's scan (cs_cleanup removes $RUN_DIR).  An
atexit hook destroys whatever a crashed test process left running.
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import time

import psycopg2

from helpers import connect, wait_for

PG_BIN = os.environ["PG_BIN"]
RUN_DIR = os.environ["RUN_DIR"]
CLUSTERS_DIR = os.path.join(RUN_DIR, "clusters")
SERVER_WRAPPER = os.path.join(RUN_DIR, "server-bin", "postgres")

_live = []          # clusters not destroyed yet, for the atexit hook


def _free_port():
    # Nothing listens on TCP (listen_addresses = ''); a port free on the
    # loopback is still a number no other cluster of this run uses.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*args, check=True, timeout=120):
    """Runs a PostgreSQL tool as the postgres OS user, from /; returns the
    CompletedProcess (output captured, raised with it on failure)."""
    cmd = ["runuser", "-u", "postgres", "--", *args]
    done = subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}")
    return done


def process_gone(pid):
    """True when pid no longer runs (exited, or a zombie its parent has not
    reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


class Cluster:
    def __init__(self, name, conf=()):
        self.name = name
        self.base = os.path.join(CLUSTERS_DIR, name)
        self.data = os.path.join(self.base, "data")
        self.log = os.path.join(self.base, "server.log")
        self.port = _free_port()
        self.conf = list(conf)
        _live.append(self)

    # -- creation ------------------------------------------------------------

    def _make_base(self):
        os.makedirs(CLUSTERS_DIR, exist_ok=True)
        os.chmod(CLUSTERS_DIR, 0o755)
        if os.path.exists(self.base):
            shutil.rmtree(self.base)
        os.mkdir(self.base)
        shutil.chown(self.base, "postgres", "postgres")   # the server writes its socket and log here
        os.chmod(self.base, 0o755)

    def _own_settings(self):
        return [f"port = {self.port}",
                f"unix_socket_directories = '{self.base}'",
                "listen_addresses = ''",
                "max_connections = 50",
                "logging_collector = off"]

    def init(self):
        """initdb (trust authentication, replication included) and the
        cluster's own settings, then the extra lines given to the
        constructor."""
        self._make_base()
        # --no-sync: a throwaway cluster; the server itself still fsyncs
        as_postgres(f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8",
                    "--locale=C.UTF-8", "--auth=trust", "--no-sync")
        self.configure(self._own_settings() + self.conf)
        return self

    def init_from_base_backup(self, primary):
        """A standby of primary: pg_basebackup -R (primary_conninfo and
        standby.signal written), streaming the WAL it needs.  The
        postgresql.conf copied from the primary keeps its lines (preloads,
        wal_level); this cluster's port and socket directory come after."""
        self._make_base()
        as_postgres(f"{PG_BIN}/pg_basebackup", "-D", self.data, "-R", "-X", "stream",
                    "-c", "fast", "-h", primary.base, "-p", str(primary.port), "-U", "postgres")
        self.configure(self._own_settings() + self.conf)
        return self

    def upgrade_from(self, old):
        """pg_upgrade of old (stopped) into this cluster (initialised, not
        running), the same binaries; pg_upgrade starts both servers itself,
        in binary-upgrade mode, not through the sanitizers' wrapper.
        Returns pg_upgrade's output."""
        done = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_upgrade",
                               "-b", PG_BIN, "-B", PG_BIN, "-d", old.data, "-D", self.data,
                               "-p", str(old.port), "-P", str(self.port), "-s", self.base,
                               "-U", "postgres", "--retain", "--no-sync"],
                              cwd=self.base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300)     # cwd: pg_upgrade writes files there
        if done.returncode != 0:
            raise RuntimeError(f"pg_upgrade failed ({done.returncode}):\n{done.stdout}")
        return done.stdout

    def server_logs_of_upgrade(self):
        """The server logs pg_upgrade kept (--retain: under
        pg_upgrade_output.d)."""
        text = ""
        for root, _, files in os.walk(self.data):
            for name in files:
                if name.endswith("server.log") or name == "pg_upgrade_server.log":
                    with open(os.path.join(root, name), errors="replace") as f:
                        text += f.read()
        return text

    def configure(self, lines):
        """Appends lines to postgresql.conf (a later line wins); they take
        effect at the next start, or reload for reloadable ones."""
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("".join(line + "\n" for line in lines))

    # -- server control ------------------------------------------------------

    def _pg_ctl(self, *args, check=True, timeout=120):
        return as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data, *args, check=check, timeout=timeout)

    def start(self, timeout=60):
        wrapper = ["-p", SERVER_WRAPPER] if os.path.exists(SERVER_WRAPPER) else []
        try:
            self._pg_ctl("-l", self.log, *wrapper, "-w", "-t", str(timeout), "start",
                         timeout=timeout + 30)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n--- {self.log} ends with:\n{self.log_tail()}") from None
        self._check_wrapper()

    def _check_wrapper(self):
        """Under the sanitizers, the postmaster runs through the wrapper (its
        argv[0] is the wrapper's path: exec -a): else the extension would
        run uninstrumented, or not at all, and the scans prove nothing."""
        if not os.path.exists(SERVER_WRAPPER):
            return
        with open(f"/proc/{self.postmaster_pid()}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode()
        if os.path.realpath(argv0) != os.path.realpath(SERVER_WRAPPER):
            raise RuntimeError(f"cluster {self.name} runs {argv0}, not the sanitizers' wrapper")

    def stop(self, mode="fast", timeout=60):
        """pg_ctl stop -m mode; returns the seconds it took."""
        started = time.monotonic()
        self._pg_ctl("-m", mode, "-w", "-t", str(timeout), "stop", timeout=timeout + 30)
        return time.monotonic() - started

    def restart(self, mode="fast", timeout=60):
        """pg_ctl restart (the wrapper, if any, is kept: postmaster.opts
        names it)."""
        self._pg_ctl("-l", self.log, "-m", mode, "-w", "-t", str(timeout), "restart",
                     timeout=timeout + 30)
        self._check_wrapper()

    def promote(self):
        self._pg_ctl("-w", "promote")

    def reload(self):
        self._pg_ctl("reload")

    def postmaster_pid(self):
        """The postmaster's pid from postmaster.pid; None when there is no
        such file."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (FileNotFoundError, ValueError):
            return None

    def running(self):
        pid = self.postmaster_pid()
        return pid is not None and not process_gone(pid)

    def children(self):
        """pids of the postmaster's child processes (its server processes)."""
        pid = self.postmaster_pid()
        if pid is None:
            return []
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def start_after_postmaster_death(self, children, grace=20):
        """After the postmaster was killed: waits for its children (the pids
        children() gave before) to exit, kills those still there after grace
        seconds (they would keep the old shared memory in use and the new
        postmaster from starting), and starts the server.  Returns the pids
        that had to be killed."""
        postmaster = self.postmaster_pid()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not all(process_gone(p) for p in children):
            time.sleep(0.05)
        # The dead postmaster was reparented to init, which may reap it late:
        # while it is a zombie, its pid in postmaster.pid still answers
        # kill(pid, 0) and the new postmaster refuses to start ("lock file
        # already exists").  A zombie holds nothing else: past a few seconds
        # the stale lock file goes.
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{postmaster}") and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(f"/proc/{postmaster}") and process_gone(postmaster):
            os.unlink(os.path.join(self.data, "postmaster.pid"))
        stuck = [p for p in children if not process_gone(p)]
        for pid in stuck:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in stuck:
            wait_for(lambda: process_gone(pid), 10, what=f"pid {pid} to exit")
        self.start()
        return stuck

    def destroy(self):
        """Stops the server (-m immediate) if it runs, waits for its
        processes to go, and removes the data directory; keeps the log."""
        if self in _live:
            _live.remove(self)
        if self.postmaster_pid() is not None and os.path.isdir(self.data):
            self._pg_ctl("-m", "immediate", "-w", "stop", check=False)
        if os.path.isdir(self.data):
            shutil.rmtree(self.data, ignore_errors=True)

    # -- sessions --------------------------------------------------------------

    @property
    def conninfo(self):
        """Keyword arguments of helpers.connect() and create_database() for
        this cluster."""
        return {"host": self.base, "port": self.port, "user": "postgres"}

    def connect(self, dbname="postgres", autocommit=True):
        return connect(dbname, autocommit, **self.conninfo)

    def wait_connect(self, dbname="postgres", timeout=60):
        """A connection as soon as the server accepts one (after a start, a
        crash and its reinitialisation, a promotion)."""
        def attempt():
            try:
                return self.connect(dbname)
            except psycopg2.OperationalError:
                return None
        return wait_for(attempt, timeout, interval=0.1, what=f"cluster {self.name} to accept connections")

    # -- its log ---------------------------------------------------------------

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except FileNotFoundError:
            return 0

    def log_since(self, offset=0):
        """The server log from byte offset on (a mark taken with log_size())."""
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=30):
        return "\n".join(self.log_since().splitlines()[-lines:])


@atexit.register
def _destroy_leftovers():
    for cluster in list(_live):
        try:
            cluster.destroy()
        except Exception:                 # at exit: stop what can be stopped
            pass
