#!/usr/bin/env python3
"""auth-service's memory under revocation-feed subscribers: starts one auth-service (release
build, PostgreSQL + Redis as in deploy/bench.py), then runs the harness's fan-out phase ROUNDS
times in a row (50 subscribers from the start of the stream, 20 000 more events each round) and
prints auth-service's RSS (now, peak) after each. The stream grows by a round's events each time,
so a subscriber that held its whole backlog would show here as a peak growing with the rounds.
Then 16 verifiers take the snapshot (`GET /revocations`) of the whole stream at once, as after a
deploy that restarts them all, and the peak is printed again.

    python3 deploy/feed_memory.py [ROUNDS]      (default 3; AUTH_BIN=<path> for another binary)
"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


SNAPSHOTS = 16


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    run_id = uuid.uuid4().hex[:12]
    database = f"feed_memory_{run_id}"
    bench.psql("postgres", f"CREATE DATABASE {database}")
    work = Path(tempfile.mkdtemp(prefix="authbooks-feed-"))
    binary = os.environ.get("AUTH_BIN", str(bench.RELEASE / "auth-service"))
    auth = None
    try:
        keys = str(work / "keys")
        subprocess.run([binary, "keys", "rotate"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "AUTH_KEYS_DIR": keys})
        port = bench.free_port()
        auth = bench.Service("auth-service", [binary], {
            "REDIS_URL": bench.REDIS, "REDIS_KEY_PREFIX": f"bench:{run_id}:", "RUST_LOG": "warn",
            "LISTEN_ADDR": f"127.0.0.1:{port}",
            "DATABASE_URL": f"{bench.PG}/{database}{bench.PG_OPTIONS}", "AUTH_KEYS_DIR": keys,
            "AUTH_BOOTSTRAP_ADMIN_USERNAME": bench.ADMIN,
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD": bench.PASSWORD, **bench.auth_env()})
        status, admin = bench.request(port, "POST", "/auth/login",
                                      {"username": bench.ADMIN, "password": bench.PASSWORD})
        assert status == 200, status
        client = bench.create_client(port, admin["access_token"], ["revocations:read"])
        now, peak = auth.rss_kb()
        print(f"before: RSS {now / 1024:.1f} MB, peak {peak / 1024:.1f} MB")
        for n in range(1, rounds + 1):
            fanout = bench.feed_fanout(port, client, f"bench:{run_id}:feed")
            now, peak = auth.rss_kb()
            print(f"round {n} ({n * bench.FEED_EVENTS} events in the stream): "
                  f"{fanout['delivered']} delivered in {fanout['seconds']:.2f} s; "
                  f"RSS {now / 1024:.1f} MB, peak {peak / 1024:.1f} MB", flush=True)
        token = bench.service_token(port, client)
        answers = []

        def take_snapshot():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/revocations", headers={"Authorization": f"Bearer {token}"})
            started = time.monotonic()
            response = conn.getresponse()
            body = response.read()
            seconds = time.monotonic() - started
            items = len(json.loads(body)["items"]) if response.status == 200 else None
            answers.append((response.status, items, seconds))
            conn.close()

        readers = [threading.Thread(target=take_snapshot) for _ in range(SNAPSHOTS)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        now, peak = auth.rss_kb()
        statuses = sorted({status for status, _, _ in answers})
        items = sorted({n for _, n, _ in answers if n is not None})
        print(f"{SNAPSHOTS} snapshots at once: statuses {statuses}, items {items}, "
              f"{min(a[2] for a in answers):.2f}-{max(a[2] for a in answers):.2f} s each; "
              f"RSS {now / 1024:.1f} MB, peak {peak / 1024:.1f} MB")
    finally:
        if auth:
            auth.stop()
        bench.psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
