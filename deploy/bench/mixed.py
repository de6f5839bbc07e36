#!/usr/bin/env python3
"""The mixed-workload run (issue 16): 2 auth-service + 3 books-service release binaries behind the
real nginx gateway (deploy/nginx.conf.template), on PostgreSQL (one database per service) and one
Redis (a key prefix of its own), driven at a fixed request rate by `mixed-load`
(deploy/bench/src/bin/mixed-load.rs): 90 % GET /books/{id}, 6 % GET /books, 2 % refresh, 1 %
login, 1 % logout. Reports p50/p99 per endpoint, errors, and whether any token a logout revoked
was accepted (probed right after each logout and, after the run, every revoked token against
every instance).

    cargo build --release -p auth-service -p books-service -p authbooks-bench
    python3 deploy/bench/mixed.py                      # 60 s at MIXED_RATES (default 1000/s)
    MIXED_RATES=500,1000,1500 MIXED_SECONDS=20 python3 deploy/bench/mixed.py   # a rate ladder

Each rate in MIXED_RATES is one run on the same stack (fresh sessions each). Prints a table per
run and writes every run's figures, the CPU time each process took and the load average to
$CARGO_TARGET_DIR/bench/mixed.json; the services' and nginx's logs go to
$CARGO_TARGET_DIR/bench/logs. Needs nginx, psql, PostgreSQL accepting `postgres` without a
password on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (BENCH_PG_URL, BENCH_REDIS_URL as in
deploy/bench.py). Standard library only. Not part of CI: it takes a minute per rate.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench  # noqa: E402  (deploy/bench.py: Service, psql, request, free_port, settings)

ROOT = bench.ROOT
RATES = [int(r) for r in os.environ.get("MIXED_RATES", "1000").split(",") if r]
SECONDS = int(os.environ.get("MIXED_SECONDS", "60"))
CONNECTIONS = int(os.environ.get("MIXED_CONNECTIONS", "64"))
SESSIONS = int(os.environ.get("MIXED_SESSIONS", "64"))
USERS, PASSWORD = 1000, "mixed-workload-password"
AUTH_INSTANCES, BOOKS_INSTANCES = 2, 3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds():
    """CPU seconds (user + system) of every process on the machine: {pid: (comm, seconds)}."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(entry.name)] = (comm, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def machine_busy():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS, sum(fields[:8]) / CLOCK_TICKS


def cpu_share(before, after, seconds, ours):
    """Cores used during the window, per process group: ours by name, the rest by command."""
    groups = {}
    for pid, (comm, used) in after.items():
        spent = used - before.get(pid, (comm, 0.0))[1]
        if spent <= 0:
            continue
        name = ours.get(pid, comm)
        groups[name] = groups.get(name, 0.0) + spent / seconds
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


class Nginx:
    """The gateway: the repository's template rendered as its header says, one upstream line per
    instance, nginx in the foreground with a private prefix."""

    def __init__(self, prefix, port, auth_ports, books_ports):
        servers = lambda ports: "\n        ".join(
            f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in ports)
        config = (ROOT / "deploy" / "nginx.conf.template").read_text()
        for name, value in (("AUTH_SERVERS", servers(auth_ports)), ("BOOKS_SERVERS", servers(books_ports)),
                            ("GATEWAY_PORT", str(port)), ("NGINX_PREFIX", str(prefix)),
                            ("NGINX_RESOLVER", ""), ("WEB_ROOT", str(ROOT / "deploy" / "web"))):
            config = config.replace("${" + name + "}", value)
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(config)
        # nginx's workers may run as another user: let them write their temp files.
        subprocess.run(["chmod", "-R", "a+rwx", str(prefix)], check=True)
        self.log = open(bench.LOGS / "nginx.log", "wb")
        self.process = subprocess.Popen(
            ["nginx", "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
             "-g", "daemon off;"], stdout=self.log, stderr=subprocess.STDOUT)
        self.port = port
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                if bench.request(port, "GET", "/nope")[0] == 404:
                    break
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("nginx did not start; see " + self.log.name)
            time.sleep(0.05)

    def pids(self):
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [self.process.pid, *map(int, children.split())]

    def stop(self):
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()
        self.log.close()


def main():
    for binary in ("auth-service", "books-service", "mixed-load"):
        if not (bench.RELEASE / binary).exists():
            raise SystemExit(f"{bench.RELEASE / binary} is missing: cargo build --release "
                             "-p auth-service -p books-service -p authbooks-bench")
    if not shutil.which("nginx"):
        raise SystemExit("nginx is required (apt-get install nginx-light)")
    run_id = uuid.uuid4().hex[:12]
    work = Path(tempfile.mkdtemp(prefix="authbooks-mixed-"))
    shutil.rmtree(bench.LOGS, ignore_errors=True)
    bench.LOGS.mkdir(parents=True)
    databases = [f"mixed_auth_{run_id}", f"mixed_books_{run_id}"]
    for db in databases:
        bench.psql("postgres", f"CREATE DATABASE {db}")
    prefix = f"mixed:{run_id}:"
    stack = []
    try:
        runs = run(work, run_id, databases, prefix, stack)
    finally:
        for process in reversed(stack):
            process.stop()
        for db in databases:
            bench.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        keys = subprocess.run(["redis-cli", "-u", bench.REDIS, "--scan", "--pattern", prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", bench.REDIS, "DEL", *keys[i:i + 500]], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    out = bench.TARGET / "bench" / "mixed.json"
    out.write_text(json.dumps(runs, indent=2))
    print(f"\nJSON: {out}")
    return 0 if all(r["errors"] == 0 and r["revoked_accepted"] == 0 for r in runs) else 1


def run(work, run_id, databases, prefix, stack):
    common = {"REDIS_URL": bench.REDIS, "REDIS_KEY_PREFIX": prefix, "RUST_LOG": "warn"}
    keys = work / "keys"
    subprocess.run([str(bench.RELEASE / "auth-service"), "keys", "rotate"], check=True,
                   env={**os.environ, "AUTH_KEYS_DIR": str(keys)}, stdout=subprocess.DEVNULL)
    auth = []
    for _ in range(AUTH_INSTANCES):
        auth.append(bench.Service("auth-service", [str(bench.RELEASE / "auth-service")], {
            **common, "LISTEN_ADDR": f"127.0.0.1:{bench.free_port()}",
            "DATABASE_URL": f"{bench.PG}/{databases[0]}{bench.PG_OPTIONS}", "AUTH_KEYS_DIR": str(keys),
            # The gateway's address: the client address is the one nginx forwards.
            "AUTH_TRUSTED_PROXIES": "127.0.0.1",
        }))
        stack.append(auth[-1])
    gateway_port = bench.free_port()
    books_ports = [bench.free_port() for _ in range(BOOKS_INSTANCES)]
    nginx = Nginx(work / "nginx", gateway_port, [a.port for a in auth], books_ports)
    stack.append(nginx)
    books = []
    for port in books_ports:
        books.append(bench.Service("books-service", [str(bench.RELEASE / "books-service")], {
            **common, "LISTEN_ADDR": f"127.0.0.1:{port}",
            "DATABASE_URL": f"{bench.PG}/{databases[1]}{bench.PG_OPTIONS}",
            "JWKS_URL": f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json",
        }))
        stack.append(books[-1])

    # Users: one registered through the API (its argon2id hash), copied to USERS accounts with
    # new ids and names (whatever the table's other columns are).
    status, _ = bench.request(auth[0].port, "POST", "/auth/register",
                              {"username": "mix0", "password": PASSWORD})
    assert status == 201, status
    bench.psql(databases[0], f"""
        INSERT INTO users
        SELECT (jsonb_populate_record(u, jsonb_build_object(
                    'id', gen_random_uuid()::text, 'username', 'mix' || i))).*
        FROM users AS u, generate_series(1, {USERS - 1}) AS i WHERE u.username = 'mix0'""")
    users_file = work / "users.tsv"
    users_file.write_text("".join(f"mix{i}\t{PASSWORD}\n" for i in range(USERS)))
    bench.psql(databases[1], f"""
        INSERT INTO books (id, title, author, isbn, published_year, created_at, updated_at, version)
        SELECT uuid_in(md5(i::text)::cstring)::text, 'Book ' || i, 'Author ' || (i % 100),
               NULL, 1900 + (i % 120), 0, 0, 1
        FROM generate_series(1, {bench.BOOKS}) AS i""")
    ids_file = work / "ids.txt"
    ids = subprocess.run(["psql", f"{bench.PG}/{databases[1]}", "-At", "-c", "SELECT id FROM books"],
                         check=True, capture_output=True, text=True).stdout.split()
    ids_file.write_text("\n".join(ids) + "\n")

    ours = {s.process.pid: f"{s.name}:{s.port}" for s in auth + books}
    ours.update({pid: "nginx" for pid in nginx.pids()})
    runs = []
    for rate in RATES:
        time.sleep(2)
        load_before = os.getloadavg()
        before, busy_before, started = cpu_seconds(), machine_busy(), time.monotonic()
        generator = subprocess.Popen(
            [str(bench.RELEASE / "mixed-load")],
            env={**os.environ, "MIXED_GATEWAY": f"127.0.0.1:{gateway_port}", "MIXED_RATE": str(rate),
                 "MIXED_SECONDS": str(SECONDS), "MIXED_USERS": str(users_file),
                 "MIXED_IDS": str(ids_file), "MIXED_SESSIONS": str(SESSIONS),
                 "MIXED_CONNECTIONS": str(CONNECTIONS),
                 "MIXED_BOOKS": ",".join(f"127.0.0.1:{p}" for p in books_ports),
                 "MIXED_AUTH": ",".join(f"127.0.0.1:{a.port}" for a in auth)},
            stdout=subprocess.PIPE, text=True)
        ours[generator.pid] = "mixed-load"
        # CPU over the load itself: sampled again when the schedule ends (the checks after it
        # are not load).
        time.sleep(SECONDS + 0.5)
        during, busy_during, window = cpu_seconds(), machine_busy(), time.monotonic() - started
        output, _ = generator.communicate()
        if generator.returncode != 0:
            raise SystemExit(f"mixed-load failed ({generator.returncode})")
        figures = json.loads(output.strip().splitlines()[-1])
        after_run = figures["after_run"]
        figures["revoked_accepted"] = (
            figures["probe_right_after_logout"]["never_refused_within_5s"]
            + sum(v["accepted"] for per in after_run.values() for v in per.values()))
        figures["after_run_not_refused"] = sum(
            v["accepted"] + sum(v["other"].values()) for per in after_run.values() for v in per.values())
        figures["cores"] = {k: round(v, 3) for k, v in cpu_share(before, during, window, ours).items()}
        # Whole machine: includes processes that started and ended inside the window (a
        # compiler's), which the per-process figures cannot see.
        figures["machine_busy_cores"] = round((busy_during[0] - busy_before[0]) / window, 3)
        figures["ours_cores"] = round(sum(v for k, v in figures["cores"].items()
                                          if k in set(ours.values())), 3)
        figures["load_average_before"] = load_before
        figures["load_average_after"] = os.getloadavg()
        figures["nproc"] = os.cpu_count()
        report(figures)
        runs.append(figures)
    return runs


def report(r):
    print(f"\nmixed workload: {r['rate']} req/s scheduled for {r['seconds']} s "
          f"({r['scheduled']} requests, {r['achieved_rate']:.0f} req/s achieved), "
          f"{r['connections']} connections to nginx, 2 auth + 3 books instances\n")
    print(f"{'endpoint':<22} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, e in r["endpoints"].items():
        print(f"{name:<22} {e['requests']:>9} {e['errors']:>7} {e['p50_ms']:>8.2f} {e['p99_ms']:>8.2f} "
              f"{e['max_ms']:>8.2f}" + (f"  {e['error_kinds']}" if e["errors"] else "")
              + (f"  (refused after racing a logout: {e['refused_after_racing_logout']})"
                 if e["refused_after_racing_logout"] else ""))
    probe = r["probe_right_after_logout"]
    print(f"\nerrors: {r['errors']}; requests sent over 1 ms late (all connections busy): "
          f"{r['sent_over_1ms_late']}")
    print(f"logouts: {r['logouts']} ({r['revoked_access_tokens']} access tokens revoked); presented to each "
          f"books instance as soon as its logout returned: accepted by {probe['accepted_at_first_probe']} "
          f"(other answers {probe['other_answer_at_first_probe']}) of {probe['probes']}; every instance "
          f"refusing p50 {probe['all_refused_p50_ms']:.2f} / p99 {probe['all_refused_p99_ms']:.2f} / "
          f"max {probe['all_refused_max_ms']:.2f} ms after the logout returned")
    print(f"after the run, revoked tokens answered other than 401 token_revoked: "
          f"{r['after_run_not_refused']}; revoked tokens accepted: {r['revoked_accepted']}")
    cores = ", ".join(f"{k} {v:.2f}" for k, v in list(r["cores"].items())[:14])
    print(f"cores used during the run (of {r['nproc']}): {cores}")
    print(f"whole machine busy: {r['machine_busy_cores']:.2f} cores, of which the stack and the load "
          f"generator {r['ours_cores']:.2f}")
    print(f"load average before / after: {r['load_average_before'][0]:.2f} / {r['load_average_after'][0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
