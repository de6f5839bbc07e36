#!/usr/bin/env python3
"""PostgreSQL failover with real processes: a primary and a streaming standby (initdb, then
pg_basebackup), auth-service and books-service on a multi-host DATABASE_URL
(`postgres://...@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write`), a steady load of
registrations, logins and GETs, then the primary is killed (`pg_ctl stop -m immediate`) and the
standby promoted. Checks and prints:

- the failover window: from the kill until writes (a registration and a login) succeed again,
  and how long after the promotion that was;
- every answer during the run was a success or a 503 `unavailable` (never a 500, never a wrong
  answer), and the failures all fall inside the window;
- what was committed (and replicated) before the kill is still there: the users registered before
  it log in afterwards;
- both services carry on without a restart.

Uses the debug binaries in $CARGO_TARGET_DIR (built beforehand), PostgreSQL's own binaries
(/usr/lib/postgresql/*/bin, run as the `postgres` user) and the Redis on 127.0.0.1:6379 with a
private key prefix. Exits non-zero on any failed check.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/authbooks-target")
PGBIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
PASSWORD = "failover-Horse-battery-staple-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*args: str, **kwargs) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + list(args), check=True, capture_output=True, text=True,
                          timeout=60, **kwargs)


def request(method: str, url: str, body: dict | None = None, token: str | None = None):
    """(status, JSON body or None); a connection failure is status 0."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, None
    except OSError:
        return 0, None


class Cluster:
    def __init__(self, root: Path, name: str, port: int):
        self.dir, self.port, self.log = root / name, port, root / f"{name}.log"

    def settings(self, socket_dir: Path) -> None:
        with open(self.dir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{socket_dir}'\nfsync = off\n"
                       "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n")

    def start(self) -> None:
        as_postgres(str(PGBIN / "pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-w",
                    "start")

    def sql(self, query: str, db: str = "postgres") -> str:
        return as_postgres(str(PGBIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                           "-U", "postgres", "-d", db, "-Atc", query).stdout.strip()


class Service:
    def __init__(self, name: str, env: dict, log: Path):
        self.name, self.log_path = name, log
        self.log = open(log, "wb")
        full = {k: v for k, v in os.environ.items()
                if not k.startswith(("AUTH_", "JWT_", "JWKS_", "REDIS_", "DATABASE_URL",
                                     "LISTEN_ADDR", "REVOCATION_", "BOOKS_"))}
        full.update(env)
        self.process = subprocess.Popen([str(TARGET / "debug" / name)], env=full,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, base: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if request("GET", f"{base}/readyz")[0] == 200:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        sys.exit(f"{self.name} did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="pg-failover-"))
    os.chmod(root, 0o777)
    shutil.chown(root, "postgres") if os.geteuid() == 0 else None
    primary = Cluster(root, "primary", free_port())
    standby = Cluster(root, "standby", free_port())
    services: list[Service] = []
    started = time.monotonic()
    try:
        as_postgres(str(PGBIN / "initdb"), "-D", str(primary.dir), "-U", "postgres",
                    "--auth=trust", "--no-sync")
        primary.settings(root)
        primary.start()
        for db in ("auth", "books"):
            primary.sql(f"CREATE DATABASE {db}")
        as_postgres(str(PGBIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                    "-U", "postgres", "-D", str(standby.dir), "-R", "-X", "stream", "-c", "fast")
        standby.settings(root)
        standby.start()
        assert standby.sql("SELECT pg_is_in_recovery()") == "t"

        hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        url = lambda db: f"postgres://postgres@{hosts}/{db}?target_session_attrs=read-write"
        prefix = f"pgfailover:{secrets.token_hex(4)}:"
        auth_port, books_port = free_port(), free_port()
        auth = f"http://127.0.0.1:{auth_port}"
        books = f"http://127.0.0.1:{books_port}"
        services.append(Service("auth-service", {
            "LISTEN_ADDR": f"127.0.0.1:{auth_port}", "DATABASE_URL": url("auth"),
            "REDIS_URL": "redis://127.0.0.1:6379", "REDIS_KEY_PREFIX": prefix,
            "AUTH_KEYS_DIR": str(root / "keys"), "AUTH_PUBLIC_URL": auth,
            "AUTH_LOGIN_LIMIT_USERNAME": "1000000", "AUTH_LOGIN_LIMIT_ADDRESS": "1000000",
            "AUTH_REGISTER_LIMIT_ADDRESS": "1000000", "RUST_LOG": "warn",
        }, root / "auth.log"))
        services[0].wait_ready(auth)
        services.append(Service("books-service", {
            "LISTEN_ADDR": f"127.0.0.1:{books_port}", "DATABASE_URL": url("books"),
            "REDIS_URL": "redis://127.0.0.1:6379", "REDIS_KEY_PREFIX": prefix,
            "JWKS_URL": f"{auth}/.well-known/jwks.json", "AUTH_PUBLIC_URL": auth,
            "RUST_LOG": "warn",
        }, root / "books.log"))
        services[1].wait_ready(books)

        # Users committed before the kill, and a reader's token for books.
        before = []
        for _ in range(5):
            name = "u" + secrets.token_hex(5)
            assert request("POST", f"{auth}/auth/register",
                           {"username": name, "password": PASSWORD})[0] == 201
            before.append(name)
        status, pair = request("POST", f"{auth}/auth/login",
                               {"username": before[0], "password": PASSWORD})
        assert status == 200, (status, pair)
        reader = pair["access_token"]

        # A steady mixed load from two threads: (time, kind, status, error code).
        answers: list[tuple[float, str, int, str | None]] = []
        stop = threading.Event()

        def load(kind: str) -> None:
            while not stop.is_set():
                if kind == "write":
                    name = "l" + secrets.token_hex(5)
                    status, body = request("POST", f"{auth}/auth/register",
                                           {"username": name, "password": PASSWORD})
                    if status == 201:
                        status, body = request("POST", f"{auth}/auth/login",
                                               {"username": name, "password": PASSWORD})
                else:
                    status, body = request("GET", f"{books}/books?limit=5", token=reader)
                code = body.get("error") if isinstance(body, dict) else None
                answers.append((time.monotonic(), kind, status, code))
                time.sleep(0.02)

        threads = [threading.Thread(target=load, args=(k,), daemon=True)
                   for k in ("write", "read")]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        # Everything written so far is on the standby before the primary goes.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lsn = primary.sql("SELECT pg_current_wal_lsn()")
            if standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t":
                break
            time.sleep(0.05)

        killed = time.monotonic()
        as_postgres(str(PGBIN / "pg_ctl"), "-D", str(primary.dir), "-m", "immediate", "stop")
        # What an operator or a failover manager (Patroni, a cloud's) does: promote the standby.
        as_postgres(str(PGBIN / "pg_ctl"), "-D", str(standby.dir), "-w", "promote")
        promoted = time.monotonic()

        # Recovered: the first successful write (registration, then login) after the kill.
        recovered = None
        deadline = time.monotonic() + 30
        while recovered is None and time.monotonic() < deadline:
            time.sleep(0.05)
            recovered = next((a[0] for a in list(answers)
                              if a[0] > killed and a[1] == "write" and a[2] == 200), None)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(15)

        failures = []
        if recovered is None:
            failures.append("writes never succeeded again after the promotion")
            recovered = time.monotonic()
        bad = [a for a in answers if a[2] not in (200, 201)]
        wrong = [a for a in bad if not (a[2] == 503 and a[3] == "unavailable")]
        if wrong:
            failures.append(f"answers other than success or 503 unavailable: {wrong[:5]}")
        outside = [a for a in bad if not killed <= a[0] <= recovered + 0.5]
        if outside:
            failures.append(f"failures outside the failover window: {outside[:5]}")
        for name in before:
            status, _ = request("POST", f"{auth}/auth/login",
                                {"username": name, "password": PASSWORD})
            if status != 200:
                failures.append(f"user {name}, registered before the kill, cannot log in: {status}")
        status, _ = request("GET", f"{books}/books", token=reader)
        if status != 200:
            failures.append(f"books-service after the failover: {status}")
        for service in services:
            if service.process.poll() is not None:
                failures.append(f"{service.name} exited")

        print(f"postgres failover: {len(answers)} answers, {len(bad)} failed (all 503 "
              f"unavailable: {not wrong}); writes back {recovered - killed:.2f} s after the "
              f"kill, {recovered - promoted:.2f} s after the promotion "
              f"(promotion took {promoted - killed:.2f} s); whole test "
              f"{time.monotonic() - started:.1f} s")
        if failures:
            for failure in failures:
                print("FAIL:", failure, file=sys.stderr)
            for service in services:
                print(f"--- {service.name}\n{service.log_path.read_text()[-2000:]}",
                      file=sys.stderr)
            return 1
        return 0
    finally:
        for service in services:
            service.stop()
        for cluster in (primary, standby):
            subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D",
                            str(cluster.dir), "-m", "immediate", "stop"],
                           capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
