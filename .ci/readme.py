#!/usr/bin/env python3
"""The README's commands, taken from README.md itself so the README cannot drift from what works.

    python3 .ci/readme.py command run|test   print the README's run / test command
    python3 .ci/readme.py smoke               run the run command as a new user would: a fresh
                                              clone with no ./data, wait for :8080, register,
                                              log in, add, list and log out through the gateway
                                              paths, then Ctrl-C (SIGINT) and a clean exit

The commands are the first line starting with `cargo run` and the first starting with
`cargo test` inside the README's fenced code blocks.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "http://127.0.0.1:8080"


def readme_command(prefix):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        text = readme.read()
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            if line.strip().startswith(prefix):
                return line.strip()
    sys.exit(f"README.md has no fenced line starting with {prefix!r}")


def call(method, path, body=None, token=None):
    """(status, parsed JSON or None) of one request to the stack."""
    request = urllib.request.Request(BASE + path, method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    return status, (json.loads(raw) if raw else None)


def expect(what, got, status):
    if got[0] != status:
        raise SystemExit(f"smoke: {what} answered {got[0]} {got[1]}, expected {status}")
    return got[1]


def smoke():
    command = readme_command("cargo run")
    print(f"smoke: running the README's `{command}` from a fresh clone", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clone = os.path.join(tmp, "clone")
        subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
        assert not os.path.exists(os.path.join(clone, "data")), "a fresh clone has no ./data"
        log_path = os.path.join(tmp, "stack.log")
        with open(log_path, "w") as log:
            # As typed at a prompt: the command itself leads its own process group (no shell in
            # between), so Ctrl-C reaches it and its exit status is the command's.
            stack = subprocess.Popen(
                shlex.split(command), cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            drive(stack, log_path)
            # Ctrl-C: SIGINT to the foreground process group, as a terminal sends it.
            os.killpg(stack.pid, signal.SIGINT)
            code = stack.wait(timeout=60)
            if code != 0:
                raise SystemExit(f"smoke: exit status {code} after Ctrl-C")
            print("smoke: stopped cleanly with Ctrl-C", flush=True)
        except BaseException:
            with open(log_path) as log:
                sys.stderr.write(log.read()[-4000:])
            if stack.poll() is None:
                os.killpg(stack.pid, signal.SIGKILL)
            raise


def admin_password(log_path):
    with open(log_path) as log:
        found = re.search(r"created user 'admin' with password (\S+)", log.read())
    return found.group(1) if found else None


def drive(stack, log_path):
    deadline = time.time() + 1800  # the first run compiles the release build
    while True:
        if stack.poll() is not None:
            raise SystemExit(f"smoke: the command exited with {stack.returncode} before serving")
        try:
            if call("GET", "/readyz")[0] == 200 and admin_password(log_path):
                break
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit("smoke: nothing ready on :8080")
        time.sleep(1)
    password = admin_password(log_path)
    expect("register", call("POST", "/auth/register",
                            {"username": "newcomer", "password": "Nimbus-walnut-Harbor-58"}), 201)
    user = expect("login as the new user", call(
        "POST", "/auth/login", {"username": "newcomer", "password": "Nimbus-walnut-Harbor-58"}), 200)
    admin = expect("login as admin", call(
        "POST", "/auth/login", {"username": "admin", "password": password}), 200)
    book = expect("add a book", call("POST", "/books", {"title": "Dune", "author": "Frank Herbert"},
                                     admin["access_token"]), 201)
    listed = expect("list books", call("GET", "/books", token=user["access_token"]), 200)
    if [b["id"] for b in listed["items"]] != [book["id"]]:
        raise SystemExit(f"smoke: the list is {listed}")
    expect("logout", call("POST", "/auth/logout", {"refresh_token": user["refresh_token"]},
                          user["access_token"]), 204)
    refused = call("GET", "/books", token=user["access_token"])
    if refused[0] != 401 or refused[1]["error"] != "token_revoked":
        raise SystemExit(f"smoke: after logout the token got {refused}")
    print("smoke: register, login, add, list, logout through :8080 all answered as documented",
          flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["command"] and len(sys.argv) == 3 and sys.argv[2] in ("run", "test"):
        print(readme_command(f"cargo {sys.argv[2]}"))
    elif sys.argv[1:] == ["smoke"]:
        smoke()
    else:
        sys.exit(__doc__)
