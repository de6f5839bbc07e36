#!/usr/bin/env python3
"""Deterministic cost guards: instructions per request, counted by callgrind, against committed
limits (deploy/callgrind-limits.json). Wall-clock benchmarks on a shared 2-core machine swing by
tens of percent between runs; instruction counts of the same build repeat to well under 2 %, so a
regression of a few percent in the request path fails here instead of hiding in bench noise.

What is measured, per request, in the service's own process (every thread):

- `GET /books/{id}`: books-service under callgrind (auth-service runs natively and only issues
  the token and serves the JWKS): one token for every request, as a client uses its access
  token, so after the first request its signature check is remembered (`VERIFIED_TOKEN_CACHE`),
  and 20 books read before, so each is served from the book cache (`BOOK_CACHE_ENTRIES`): the
  time and type checks, the revocation replica, the cache, the HTTP work.
- `GET /books/{id}` from the database: the same for books never read before, so each read
  misses the cache, reads its PostgreSQL row and fills the cache.
- `GET /books/{id}`, a new token each: as the first, with a token books-service has not seen,
  so the RS256 verification is counted too (tokens minted by a refresh chain beforehand).
- `POST /auth/refresh`: auth-service under callgrind, one rotation chain (each refresh token
  presented once): verification, the Redis rotation script, signing the new pair.
- `POST /auth/login` without argon2: a successful login of the bootstrap admin, with callgrind
  not counting inside `auth_service::password::compute` (`--toggle-collect`), the function that
  runs argon2id itself (its 19 MiB memory and the hash). Everything else is counted: throttle,
  user reads, parsing the stored PHC string, the session ledger, signing the pair. The service
  has no setting for a cheaper argon2 cost (it must not), and a wrong password or an unknown or
  over-long name takes other paths (the failure path, or no verification at all), so this is
  the one honest way to guard the rest of the login. argon2 itself is guarded by its own
  fixed parameters (`password::MEMORY_KIB` etc.) and timed by `cargo bench --bench tokens`.

Method: each service runs as its release binary under
`valgrind --tool=callgrind` with `HTTP_WORKERS=1`, against PostgreSQL (a database created and
dropped here) and Redis (a key prefix of its own). After a warm-up the counters are dumped
(`callgrind_control --dump`, discarded), then exactly N requests are sent one after another on
one keep-alive connection, then dumped again: that dump's `totals:` Ir divided by N is the
figure. Background work (timers, the replica's heartbeat) falls into the window too; with the
periodic tasks slowed by settings it is far below the noise threshold.

Counts depend on the build (rustc, dependency versions, profile) and on what valgrind's CPU
reports (it hides AVX-512, so aws-lc and argon2 take their AVX2 paths wherever AVX2 exists), not
on load: CI on a busy machine sees the same figures. A toolchain or dependency upgrade may move
them; re-measure then.

Usage (after `cargo build --release -p auth-service -p books-service`):

    python3 deploy/callgrind_guard.py                 # check against the limits; exit 1 if over
    python3 deploy/callgrind_guard.py --runs 3        # repeat, print the spread
    python3 deploy/callgrind_guard.py --write-limits  # limits = measured x 1.15 (mean of the runs)

Needs valgrind (callgrind_control, vgdb), psql, PostgreSQL accepting `postgres` without a password
on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (`BENCH_PG_URL`, `BENCH_REDIS_URL` as in bench.py).
Standard library only.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
RELEASE = TARGET / "release"
LIMITS = ROOT / "deploy" / "callgrind-limits.json"
PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
PG_OPTIONS = "?sslmode=disable"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
ADMIN, PASSWORD = "guardadmin", "guard-admin-password"
FACTOR = 1.15
BOOKS = 1000
# Requests per measurement; logins are few because argon2 still runs (uncounted) under valgrind.
COUNTS = {"get_book": 200, "get_book_from_database": 200, "get_book_new_token": 200, "refresh": 200,
          "login_without_argon2": 10}
WARM_UP = 20
NAMES = {
    "get_book": "GET /books/{id}",
    "get_book_from_database": "GET /books/{id}, each book read for the first time",
    "get_book_new_token": "GET /books/{id}, a new token each",
    "refresh": "POST /auth/refresh",
    "login_without_argon2": "POST /auth/login (argon2 excluded)",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(database, sql, capture=False):
    out = subprocess.run(["psql", f"{PG}/{database}", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout if capture else None


class Client:
    """One keep-alive connection; every request must get `expect`."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, token=None, expect=200):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != expect:
            raise SystemExit(f"{method} {path}: {response.status} {data[:200]!r}, expected {expect}")
        return json.loads(data) if data else None

    def close(self):
        self.conn.close()


class Service:
    """A service process, optionally under callgrind; waits for `/readyz`."""

    def __init__(self, binary, env, work, callgrind_args=None):
        self.port = int(env["LISTEN_ADDR"].rsplit(":", 1)[1])
        self.out = None
        argv = [str(RELEASE / binary)]
        if callgrind_args is not None:
            self.out = work / f"{binary}.callgrind"
            argv = ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={self.out}",
                    *callgrind_args, *argv]
        self.log = open(work / f"{binary}.log", "ab")
        self.process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"{binary} did not become ready; log: {self.log.name}")
            time.sleep(0.2)

    def dump(self):
        """Instructions counted since the previous dump (callgrind zeroes its counters on dump)."""
        before = set(self.out.parent.glob(self.out.name + ".*"))
        subprocess.run(["callgrind_control", "--dump", str(self.process.pid)], check=True,
                       capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for path in set(self.out.parent.glob(self.out.name + ".*")) - before:
                match = re.search(r"^totals:\s+(\d+)", path.read_text(errors="replace"), re.M)
                if match:
                    return int(match.group(1))
            time.sleep(0.1)
        raise SystemExit(f"no callgrind dump appeared for pid {self.process.pid}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def measure(service, n, one_request):
    """Instructions per request over `n` requests, after a dump that discards what came before."""
    service.dump()
    for i in range(n):
        one_request(i)
    return service.dump() / n


def run_once(work, run_id):
    databases = [f"guard_auth_{run_id}", f"guard_books_{run_id}"]
    for db in databases:
        psql("postgres", f"CREATE DATABASE {db}")
    services = []
    try:
        return measure_all(work / run_id, run_id, databases, services)
    finally:
        for service in services:
            service.stop()
        for db in databases:
            psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        prefix = f"guard:{run_id}:"
        keys = subprocess.run(["redis-cli", "-u", REDIS, "--scan", "--pattern", prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", REDIS, "DEL", *keys[i:i + 500]],
                           capture_output=True)


def measure_all(work, run_id, databases, services):
    work.mkdir(parents=True)
    keys = work / "keys"
    subprocess.run([str(RELEASE / "auth-service"), "keys", "rotate"], check=True,
                   env={**os.environ, "AUTH_KEYS_DIR": str(keys)}, stdout=subprocess.DEVNULL)
    common = {
        "REDIS_URL": REDIS, "REDIS_KEY_PREFIX": f"guard:{run_id}:", "RUST_LOG": "warn",
        "HTTP_WORKERS": "1",
    }
    auth_env = {
        **common, "DATABASE_URL": f"{PG}/{databases[0]}{PG_OPTIONS}", "AUTH_KEYS_DIR": str(keys),
        "AUTH_BOOTSTRAP_ADMIN_USERNAME": ADMIN, "AUTH_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
        # Throttling would turn the login run into a measure of back-off.
        "AUTH_LOGIN_LIMIT_USERNAME": "1000000000", "AUTH_LOGIN_LIMIT_ADDRESS": "1000000000",
        # Periodic work only adds noise to the window.
        "AUTH_KEYS_RELOAD_SECS": "3600", "AUTH_FEED_HEARTBEAT_SECS": "3600",
    }
    results = {}

    # GET: auth-service natively (token, JWKS), books-service under callgrind.
    auth_port = free_port()
    auth = Service("auth-service", {**auth_env, "LISTEN_ADDR": f"127.0.0.1:{auth_port}"}, work)
    services.append(auth)
    books = Service("books-service", {
        **common, "LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "DATABASE_URL": f"{PG}/{databases[1]}{PG_OPTIONS}",
        "JWKS_URL": f"http://127.0.0.1:{auth_port}/.well-known/jwks.json",
    }, work, callgrind_args=[])
    services.append(books)
    psql(databases[1], f"""
        INSERT INTO books (id, title, author, isbn, published_year, created_at, updated_at, version)
        SELECT uuid_in(md5(i::text)::cstring)::text, 'Book ' || i, 'Author ' || (i % 100),
               NULL, 1900 + (i % 120), 0, 0, 1
        FROM generate_series(1, {BOOKS}) AS i""")
    # The same ids in the same order every run.
    ids = psql(databases[1], "SELECT id FROM books ORDER BY id", capture=True).split()
    login = Client(auth_port)
    pair = login.call("POST", "/auth/login", {"username": ADMIN, "password": PASSWORD})
    token = pair["access_token"]
    # Tokens books-service has never seen, for the GET that must check a signature: a refresh
    # chain mints one access token a step.
    fresh_tokens, refresh_token = [], pair["refresh_token"]
    for _ in range(WARM_UP + COUNTS["get_book_new_token"]):
        pair = login.call("POST", "/auth/refresh", token=refresh_token)
        fresh_tokens.append(pair["access_token"])
        refresh_token = pair["refresh_token"]
    login.close()
    client = Client(books.port)
    for i in range(WARM_UP):
        client.call("GET", f"/books/{ids[i]}", token=token)
    # One token for every request, as a client uses its access token: verified once, then
    # remembered (VERIFIED_TOKEN_CACHE); the WARM_UP books read above, from the book cache.
    results["get_book"] = measure(books, COUNTS["get_book"],
                                  lambda i: client.call("GET", f"/books/{ids[i % WARM_UP]}", token=token))
    # Books never read before: each misses the book cache and is read from PostgreSQL.
    unread = ids[100:100 + COUNTS["get_book_from_database"]]
    results["get_book_from_database"] = measure(
        books, COUNTS["get_book_from_database"],
        lambda i: client.call("GET", f"/books/{unread[i]}", token=token))
    for i in range(WARM_UP):
        client.call("GET", f"/books/{ids[i]}", token=fresh_tokens[i])
    results["get_book_new_token"] = measure(
        books, COUNTS["get_book_new_token"],
        lambda i: client.call("GET", f"/books/{ids[i % WARM_UP]}", token=fresh_tokens[WARM_UP + i]))
    client.close()
    for service in (books, auth):
        service.stop()
        services.remove(service)

    # Refresh and login: auth-service under callgrind, argon2's computation not counted.
    auth = Service("auth-service", {**auth_env, "LISTEN_ADDR": f"127.0.0.1:{free_port()}"}, work,
                   # --toggle-collect turns collection off at start; the option after it turns it back on.
                   callgrind_args=["--toggle-collect=auth_service::password::compute*",
                                   "--collect-atstart=yes"])
    services.append(auth)
    client = Client(auth.port)
    credentials = {"username": ADMIN, "password": PASSWORD}
    refresh_token = client.call("POST", "/auth/login", credentials)["refresh_token"]

    def refresh(_):
        nonlocal refresh_token
        refresh_token = client.call("POST", "/auth/refresh", token=refresh_token)["refresh_token"]

    for i in range(WARM_UP):
        refresh(i)
    results["refresh"] = measure(auth, COUNTS["refresh"], refresh)
    client.call("POST", "/auth/login", credentials)
    results["login_without_argon2"] = measure(
        auth, COUNTS["login_without_argon2"], lambda _: client.call("POST", "/auth/login", credentials))
    client.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="measure this many times (spread)")
    parser.add_argument("--write-limits", action="store_true",
                        help=f"write limits = mean measured x {FACTOR} instead of checking")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "psql", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit(f"callgrind guard: {tool} is required")
    for binary in ("auth-service", "books-service"):
        if not (RELEASE / binary).exists():
            raise SystemExit(f"callgrind guard: {RELEASE / binary} is missing; "
                             "cargo build --release -p auth-service -p books-service")

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="authbooks-callgrind-"))
    runs = []
    try:
        for _ in range(args.runs):
            runs.append(run_once(work, uuid.uuid4().hex[:12]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"callgrind guard: instructions per request, {args.runs} run(s), "
          f"{time.monotonic() - started:.0f} s")
    limits = json.loads(LIMITS.read_text())["limits"] if LIMITS.exists() else {}
    means, failures = {}, []
    for key, name in NAMES.items():
        values = [r[key] for r in runs]
        means[key] = sum(values) / len(values)
        spread = (max(values) - min(values)) / max(min(values), 1) * 100
        limit = limits.get(key)
        line = f"  {name:<52} {means[key]:>12,.0f}"
        if len(values) > 1:
            line += f"  (min {min(values):,.0f}, max {max(values):,.0f}, spread {spread:.2f} %)"
        if limit is not None and not args.write_limits:
            line += f"  limit {limit:,}"
            if max(values) > limit:
                line += "  EXCEEDED"
                failures.append(f"{name}: {max(values):,.0f} instructions per request, "
                                f"limit {limit:,} ({max(values) / limit * 100 - 100:.1f} % over)")
        print(line)

    if args.write_limits:
        LIMITS.write_text(json.dumps({
            "note": f"Instructions per request counted by deploy/callgrind_guard.py (callgrind Ir, "
                    f"release build, HTTP_WORKERS=1); limit = measured x {FACTOR}, measured being "
                    f"the mean of {args.runs} run(s). Re-measure with --write-limits after a change "
                    f"that is meant to cost more, and say why in the commit.",
            "factor": FACTOR,
            "measured": {k: round(v) for k, v in means.items()},
            "limits": {k: round(v * FACTOR) for k, v in means.items()},
        }, indent=2) + "\n")
        print(f"wrote {LIMITS.relative_to(ROOT)}")
    elif failures:
        for failure in failures:
            print(f"callgrind guard FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
