#!/usr/bin/env python3
"""Two builds side by side: the refresh, login and login-flood phases of deploy/bench.py, repeated
and alternated between two sets of binaries, so that a change is judged against the build before
it in the same minutes (on a shared 2-core machine a ratio moves by tens of percent between runs
minutes apart; alternating is what makes a before/after comparison fair).

    python3 deploy/bench_ab.py BEFORE_DIR AFTER_DIR [--phases login,refresh,flood,fixed] [--rounds 2]
        [--repeat 3]

Each *_DIR holds an `auth-service` and a `books-service` binary (copy them out of
`$CARGO_TARGET_DIR/release` after each build). Each round starts both services afresh from
BEFORE_DIR, runs every phase `--repeat` times, then does the same from AFTER_DIR. Per phase it
prints the same ratios as deploy/bench.py, with their ceilings measured right before and after
(`cargo bench -p auth-service --bench tokens -- --ceiling ...`, so a release build of the tokens
bench must exist), and where the time went in auth-service: its CPU in cores (from /proc), the
argon2 threads' share and hashes per argon2 core-second, and context switches on the machine per
request. Needs what deploy/bench.py needs (wrk, psql, PostgreSQL, Redis).
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import bench


def cpu_seconds(pid, thread_prefix=""):
    """CPU time of a process's threads whose name starts with `thread_prefix`."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if not stat.split("(", 1)[1].startswith(thread_prefix):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def context_switches():
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("ctxt "):
            return int(line.split()[1])
    return 0


class Stack:
    """auth-service and one books-service from `binaries`, on fresh databases, with 10 000 books."""

    def __init__(self, binaries):
        self.work = Path(tempfile.mkdtemp(prefix="authbooks-ab-"))
        run_id = uuid.uuid4().hex[:12]
        self.databases = [f"bench_auth_{run_id}", f"bench_books_{run_id}"]
        self.services = []
        for database in self.databases:
            bench.psql("postgres", f"CREATE DATABASE {database}")
        common = {"REDIS_URL": bench.REDIS, "REDIS_KEY_PREFIX": f"bench:{run_id}:",
                  "RUST_LOG": "warn"}
        auth_bin, books_bin = str(binaries / "auth-service"), str(binaries / "books-service")
        subprocess.run([auth_bin, "keys", "rotate"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "AUTH_KEYS_DIR": str(self.work / "keys")})
        self.auth_port = bench.free_port()
        self.auth = bench.Service("auth-service", [auth_bin], {
            **common, "LISTEN_ADDR": f"127.0.0.1:{self.auth_port}",
            "DATABASE_URL": f"{bench.PG}/{self.databases[0]}{bench.PG_OPTIONS}",
            "AUTH_KEYS_DIR": str(self.work / "keys"),
            "AUTH_BOOTSTRAP_ADMIN_USERNAME": bench.ADMIN,
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD": bench.PASSWORD,
            **bench.auth_env(),
        })
        self.services.append(self.auth)
        self.books = bench.Service("books-service", [books_bin], {
            **common, "LISTEN_ADDR": f"127.0.0.1:{bench.free_port()}",
            "DATABASE_URL": f"{bench.PG}/{self.databases[1]}{bench.PG_OPTIONS}",
            "JWKS_URL": f"http://127.0.0.1:{self.auth_port}/.well-known/jwks.json",
        })
        self.services.append(self.books)
        bench.psql(self.databases[1], f"""
            INSERT INTO books (id, title, author, isbn, published_year, created_at, updated_at, version)
            SELECT uuid_in(md5(i::text)::cstring)::text, 'Book ' || i, 'Author ' || (i % 100),
                   NULL, 1900 + (i % 120), 0, 0, 1
            FROM generate_series(1, {bench.BOOKS}) AS i""")
        ids = subprocess.run(["psql", f"{bench.PG}/{self.databases[1]}", "-At", "-c",
                              "SELECT id FROM books"],
                             check=True, capture_output=True, text=True).stdout.split()
        (self.work / "ids.txt").write_text("\n".join(ids) + "\n")
        status, pair = self.login()
        assert status == 200, status
        self.scripts = {name: self.work / f"{name}.lua" for name in ("get", "refresh", "login")}
        self.scripts["get"].write_text(bench.LUA_GET)
        self.scripts["refresh"].write_text(bench.LUA_REFRESH)
        self.scripts["login"].write_text(bench.LUA_LOGIN)
        self.get_env = {"BENCH_IDS": str(self.work / "ids.txt"),
                        "BENCH_TOKEN": pair["access_token"], "BENCH_PATH": "/books/"}
        self.login_env = {"BENCH_LOGIN": json.dumps({"username": bench.ADMIN,
                                                     "password": bench.PASSWORD})}
        self.login_url = f"http://127.0.0.1:{self.auth_port}/auth/login"

    def login(self):
        return bench.request(self.auth_port, "POST", "/auth/login",
                             {"username": bench.ADMIN, "password": bench.PASSWORD})

    def close(self):
        for service in self.services:
            service.stop()
        for database in self.databases:
            bench.psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(self.work, ignore_errors=True)

    def login_load(self, seconds):
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", "8", "-d", f"{seconds}s", "-s", str(self.scripts["login"]),
             self.login_url],
            env={**os.environ, **self.login_env}, capture_output=True, text=True, check=True).stdout
        return bench.wrk_rate(out)

    def refresh(self):
        chains = {f"BENCH_RT_{n}": self.login()[1]["refresh_token"]
                  for n in range(1, bench.REFRESH_CHAINS + 1)}
        before = bench.ceiling("sign")
        cpu, switches = cpu_seconds(self.auth.process.pid), context_switches()
        result = bench.refresh_load(self.auth_port, self.scripts["refresh"], chains)
        cpu = cpu_seconds(self.auth.process.pid) - cpu
        switches = context_switches() - switches
        after = bench.ceiling("sign")
        ceiling = (before + after) / 4
        done = result["rps"] * bench.SECONDS
        return (f"refresh {result['rps']:.0f}/s / ceiling {ceiling:.0f} = "
                f"{result['rps'] / ceiling:.3f}; auth-service {cpu / bench.SECONDS:.2f} cores, "
                f"{switches / done:.1f} context switches a refresh, "
                f"{result['non_2xx']} non-2xx")

    def login_phase(self):
        before = bench.ceiling("argon2")
        pid = self.auth.process.pid
        cpu, argon2, switches = cpu_seconds(pid), cpu_seconds(pid, "argon2"), context_switches()
        rate = self.login_load(bench.SECONDS)
        cpu, argon2 = cpu_seconds(pid) - cpu, cpu_seconds(pid, "argon2") - argon2
        switches = context_switches() - switches
        after = bench.ceiling("argon2")
        ceiling = (before + after) / 2
        done = rate * bench.SECONDS
        return (f"login {rate:.1f}/s / ceiling {ceiling:.1f} = {rate / ceiling:.3f}; "
                f"auth-service {cpu / bench.SECONDS:.2f} cores, argon2 threads "
                f"{argon2 / bench.SECONDS:.2f} ({done / argon2:.1f} hashes a core-second, ceiling "
                f"{ceiling / bench.CORES:.1f}), {switches / done:.1f} context switches a login")

    def flood(self):
        alone, during, login_rate = bench.closed_loop_flood(
            self.books.port, self.scripts["get"], self.get_env, self.login_url,
            self.scripts["login"], self.login_env)
        return (f"flood GET p99 {during['p99_ms']:.2f} ms / alone {alone['p99_ms']:.2f} ms = "
                f"{during['p99_ms'] / alone['p99_ms']:.2f}x (GET {during['rps']:.0f} / "
                f"{alone['rps']:.0f} req/s, logins {login_rate:.1f}/s during)")

    def fixed(self):
        """The flood comparison at a fixed GET rate, open loop (BENCH_FIXED_GET_RATE, default
        a third of what an 8-connection closed loop reaches alone right before)."""
        token = self.get_env["BENCH_TOKEN"]
        rate = bench.FIXED_GET_RATE or bench.fixed_get_rate(bench.wrk(
            self.books.port, bench.SECONDS, 8, self.scripts["get"], self.get_env)["rps"])
        ids = self.work / "ids.txt"
        alone = bench.fixed_rate_get(self.books.port, rate, token, ids)
        logins = bench.login_flood(self.login_url, self.scripts["login"], self.login_env)
        time.sleep(1)
        during = bench.fixed_rate_get(self.books.port, rate, token, ids)
        logins.communicate()
        return (f"fixed {rate}/s GET p99 {during['p99_ms']:.2f} ms / alone {alone['p99_ms']:.2f} ms = "
                f"{during['p99_ms'] / alone['p99_ms']:.2f}x (p50 {during['p50_ms']:.2f} / "
                f"{alone['p50_ms']:.2f} ms; late sends {during['sent_over_1ms_late']} / "
                f"{alone['sent_over_1ms_late']}; errors {during['errors']} / {alone['errors']})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--phases", default="login,refresh,flood")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    phases = args.phases.split(",")
    for round_ in range(1, args.rounds + 1):
        for label, binaries in (("before", args.before), ("after", args.after)):
            stack = Stack(binaries.resolve())
            try:
                for n in range(1, args.repeat + 1):
                    for phase in phases:
                        line = {"login": stack.login_phase, "refresh": stack.refresh,
                                "flood": stack.flood, "fixed": stack.fixed}[phase]()
                        print(f"round {round_} {label:6} #{n} {line}", flush=True)
            finally:
                stack.close()


if __name__ == "__main__":
    main()
