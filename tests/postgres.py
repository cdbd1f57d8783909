"""A throwaway PostgreSQL server for the sweep tests and the storage benchmark.

``start()`` runs Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``) on a free port of
127.0.0.1, with the data and the unix socket in a fresh temp dir, creates a user with a password
and a database it owns, and returns a ``Server`` whose ``url`` Optuna takes
(``postgresql+psycopg2://``: the driver in requirements.txt); ``create_database`` adds another,
empty one; ``stop()`` shuts it down and deletes the dir. PostgreSQL refuses to run as root, so
as root the binaries run as the ``postgres`` user (``runuser``) on a dir that user owns.
``Unavailable`` says why a server could not be had (no binaries, no postgres user, no start),
for a clear ``pytest.skip``.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD, DB = "sweeper", "sweep-pw", "sweeps"


class Unavailable(RuntimeError):
    pass


def find_bin(name: str) -> str | None:
    """``name`` on PATH, else in the newest /usr/lib/postgresql/*/bin (Debian keeps them there)."""
    if found := shutil.which(name):
        return found
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name.split(".")[0]))
    return next((str(Path(d) / name) for d in reversed(dirs) if (Path(d) / name).exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    root: Path
    port: int
    as_user: list[str]
    pg_ctl: str
    user: str = USER
    password: str = PASSWORD
    db: str = DB

    @property
    def plain_url(self) -> str:
        """The URL as docs/sweeps.md writes it; SQLAlchemy >= 2.1 reads ``postgresql://`` as psycopg (3)."""
        return self.url.replace("+psycopg2", "", 1)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.db}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database owned by the user; its URL (as ``url``, another database)."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" OWNER {self.user}')
        conn.close()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start(settings: dict[str, str] | None = None, timeout: int = 60) -> Server:
    """A fresh server; ``settings`` are extra ``-c name=value`` options (e.g. fsync=off)."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise Unavailable("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        import psycopg2
    except ImportError:
        raise Unavailable("psycopg2 is not installed (pip install psycopg2-binary)") from None
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="pg-sweeps-"))
    if os.geteuid() == 0:  # the server will not run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        if not (runuser := shutil.which("runuser")):
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and runuser is missing")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

    def run(argv: list[str], what: str) -> None:
        try:
            out = subprocess.run([*as_user, *argv], capture_output=True, text=True, timeout=timeout, env=env,
                                 cwd=root)
        except (OSError, subprocess.TimeoutExpired) as e:
            out = None
            why = str(e)
        else:
            why = (out.stderr or out.stdout).strip().splitlines()[-1:] if out.returncode else ""
        if out is None or out.returncode:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable(f"{what} failed: {why} {' '.join(tail)}".strip())

    run([initdb, "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale", "--auth-local=trust",
         "--auth-host=scram-sha-256"], "initdb")
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    options += "".join(f" -c {k}={v}" for k, v in (settings or {}).items())
    run([pg_ctl, "start", "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", str(timeout)], "pg_ctl start")
    server = Server(root, port, as_user, pg_ctl)
    try:  # over the unix socket, where the postgres superuser is trusted
        conn = psycopg2.connect(host=str(root), port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER {USER} PASSWORD %s", (PASSWORD,))
            cur.execute(f"CREATE DATABASE {DB} OWNER {USER}")
        conn.close()
    except Exception as e:  # noqa: BLE001 - any failure here means no usable server
        server.stop()
        raise Unavailable(f"could not create the user and database: {e}") from None
    return server
