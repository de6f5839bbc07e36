"""Fixtures: a real auth-service (the built binary), an OAuth client made through its admin API,
and the example services (Flask and Node) started against it.

The auth-service binary is taken from AUTH_SERVICE_BIN, by default
${CARGO_TARGET_DIR:-$HOME/.cache/authbooks-target}/debug/auth-service; nothing is built here.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

EXAMPLES = Path(__file__).resolve().parents[1]
KINDS = ("flask", "node")

# Settings of auth-service that must not leak in from the environment running the tests.
INHERITED_SETTINGS = ("AUTH_", "JWT_", "JWKS_", "REDIS_", "DATABASE_URL", "LISTEN_ADDR",
                      "ACCESS_TOKEN_TTL", "REFRESH_TOKEN_TTL", "HTTP_WORKERS", "RUST_LOG")

# (what, service, seconds): printed at the end of the run.
LATENCIES: list[tuple[str, str, float]] = []


def auth_service_bin() -> Path:
    explicit = os.environ.get("AUTH_SERVICE_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/authbooks-target")
    return Path(target) / "debug" / "auth-service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None and value is not False:  # (a 4xx/5xx Response is falsy)
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def unverified(token: str) -> tuple[dict, dict]:
    """The header and claims of a JWT, without verifying anything."""
    def part(segment: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    header, claims, _ = token.split(".")
    return part(header), part(claims)


def password() -> str:
    return secrets.token_urlsafe(18)


class Process:
    """A child process whose output goes to a log file, shown when something fails."""

    def __init__(self, name: str, args: list, env: dict, cwd: Path | None, log: Path):
        self.name, self.log = name, log
        self._log_file = open(log, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- last lines of {self.name} ({self.log}) ---\n" + "\n".join(text[-lines:])

    def wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}\n{self.tail()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout} s\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log_file.close()


class User:
    def __init__(self, auth: "AuthService", username: str, password: str):
        self.auth, self.username, self.password = auth, username, password

    def login(self) -> dict:
        response = requests.post(f"{self.auth.url}/auth/login", timeout=30,
                                 json={"username": self.username, "password": self.password})
        assert response.status_code == 200, response.text
        return response.json()


class AuthService:
    """A real auth-service on SQLite with the in-process store (no Redis)."""

    def __init__(self, workdir: Path, *, audience: str | None = None,
                 public_url: str | None = None, keys_from: Path | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = public_url or self.url
        self.keys_dir = workdir / "keys"
        if keys_from is not None:  # the same keys, hence the same kid, as another instance
            shutil.copytree(keys_from, self.keys_dir)
        self.admin = ("examples-admin", password())
        # Nothing inherited configures it (REDIS_URL unset: the in-process store).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_SETTINGS)}
        self.env.update({
            "LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "DATABASE_URL": f"sqlite://{workdir}/auth.db",
            "AUTH_KEYS_DIR": str(self.keys_dir),
            "AUTH_PUBLIC_URL": self.issuer,
            "AUTH_BOOTSTRAP_ADMIN_USERNAME": self.admin[0],
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD": self.admin[1],
            "RUST_LOG": "warn",
            "AUTH_LOGIN_LIMIT_USERNAME": "1000000",
            "AUTH_LOGIN_LIMIT_ADDRESS": "1000000",
            "AUTH_REGISTER_LIMIT_ADDRESS": "1000000",
            "AUTH_KEY_ACTIVATION_DELAY": "0",
            "AUTH_KEYS_RELOAD_SECS": "1",
        })
        if audience is not None:
            self.env["JWT_AUDIENCE"] = audience
        self.process: Process | None = None

    def start(self) -> "AuthService":
        binary = auth_service_bin()
        if not os.access(binary, os.X_OK):
            pytest.exit(f"no auth-service binary at {binary}: run `cargo build -p auth-service` "
                        "or set AUTH_SERVICE_BIN", returncode=1)
        self.process = Process(f"auth-service :{self.port}", [str(binary)], self.env, self.workdir,
                               self.workdir / "auth-service.log")
        self.process.wait_ready(f"{self.url}/readyz", timeout=60)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def tail(self) -> str:
        return self.process.tail() if self.process else ""

    def discovery(self, which: str = "openid-configuration") -> dict:
        response = requests.get(f"{self.url}/.well-known/{which}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def new_user(self) -> User:
        username = "u" + secrets.token_hex(6)
        user = User(self, username, password())
        response = requests.post(f"{self.url}/auth/register", timeout=30,
                                 json={"username": username, "password": user.password})
        assert response.status_code == 201, response.text
        return user

    def admin_user(self) -> User:
        return User(self, *self.admin)

    def create_client(self, scopes: list[str], name: str | None = None) -> dict:
        access = self.admin_user().login()["access_token"]
        response = requests.post(f"{self.url}/auth/clients", timeout=30,
                                 headers={"Authorization": f"Bearer {access}"},
                                 json={"name": name or "examples-" + secrets.token_hex(4),
                                       "scopes": scopes})
        assert response.status_code == 201, response.text
        return response.json()

    def rotate_key(self) -> str:
        result = subprocess.run([str(auth_service_bin()), "keys", "rotate"], env=self.env,
                                cwd=self.workdir, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


class CuttableProxy:
    """A TCP proxy to auth-service whose connections the test can cut, recording each
    connection's request head (to see what a reconnect sends)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.request_heads: list[str] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            if self._refusing:
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._open += [downstream, upstream]
            threading.Thread(target=self._pipe, args=(downstream, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        first = record
        try:
            while data := source.recv(65536):
                if first:
                    self.request_heads.append(data.split(b"\r\n\r\n")[0].decode(errors="replace"))
                    first = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `resume`."""
        self._refusing = True
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def resume(self) -> None:
        self._refusing = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


class ExampleService:
    """One of the example services, started as a subprocess against an auth-service."""

    def __init__(self, kind: str, auth: AuthService, client: dict, workdir: Path, *,
                 audience: str | None = None, extra_env: dict | None = None):
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in (
            "JWT_AUDIENCE", "JWT_LEEWAY", "REVOCATIONS_URL", "REVOCATION_STALENESS_MS")}
        env.update({
            "AUTH_ISSUER": auth.issuer,
            "CLIENT_ID": client["client_id"],
            "CLIENT_SECRET": client["client_secret"],
            "LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "JWKS_REFETCH_COOLDOWN": "1",
            "PYTHONUNBUFFERED": "1",
        })
        if audience is not None:
            env["JWT_AUDIENCE"] = audience
        env.update(extra_env or {})
        if kind == "flask":
            args, cwd = [sys.executable, "app.py"], EXAMPLES / "flask"
        else:
            args, cwd = ["node", "server.mjs"], EXAMPLES / "node"
        workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process(f"{kind} example :{self.port}", args, env, cwd,
                               workdir / f"{kind}-{self.port}.log")

    def wait_ready(self) -> "ExampleService":
        self.process.wait_ready(f"{self.url}/readyz", timeout=30)
        return self

    def hello(self, token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.get(f"{self.url}/hello", headers=headers, timeout=10)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples")


@pytest.fixture(scope="session")
def auth(workdir):
    service = AuthService(workdir / "auth").start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def client(auth) -> dict:
    """A client the example services use for their revocation feed."""
    return auth.create_client(["revocations:read"], name="examples-services")


@pytest.fixture(scope="session")
def examples(auth, client, workdir) -> dict[str, ExampleService]:
    services = {kind: ExampleService(kind, auth, client, workdir / "services") for kind in KINDS}
    try:
        for service in services.values():
            service.wait_ready()
        yield services
    finally:
        for service in services.values():
            service.stop()


@pytest.fixture(params=KINDS)
def service(request, examples) -> ExampleService:
    return examples[request.param]


@pytest.fixture(scope="session")
def twin_auth(auth, workdir):
    """Start (once) auth-services sharing `auth`'s keys, with other settings."""
    started: dict[str, AuthService] = {}

    def start(name: str, **settings) -> AuthService:
        if name not in started:
            started[name] = AuthService(workdir / name, keys_from=auth.keys_dir, **settings).start()
        return started[name]

    yield start
    for service in started.values():
        service.stop()


def pytest_terminal_summary(terminalreporter):
    if LATENCIES:
        terminalreporter.section("revocation latency (revoking request answered -> refused)")
        for what, kind, seconds in LATENCIES:
            terminalreporter.write_line(f"{kind:>6}  {what:<40} {seconds * 1000:7.1f} ms")
