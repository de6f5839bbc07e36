#!/usr/bin/env python3
"""Checks the deployment material against the services and against itself.

    pip install check-jsonschema pyyaml
    python3 deploy/check_config.py [--verbose]

1. docker-compose.yml validates against the Compose specification (check-jsonschema's vendored
   schema, no network needed).
2. docker-compose.yml agrees with the services: every variable a service reads is set or has a
   default, nothing unknown is set, ports and health-check URLs match, dependencies wait for
   health, and no secret is written in the file.
3. deploy/k8s/*.yaml parse, name themselves, probe /readyz and /healthz on the right port and
   wire ConfigMaps, Secrets, Services, autoscalers, budgets and the Ingress consistently; the
   NetworkPolicies deny ingress by default and let only the ingress controller reach the
   services and only the services reach PostgreSQL and Redis; auth-service trusts a narrow
   proxy range; with kubernetes-validate installed, they also validate against the Kubernetes
   API schemas.
4. The build context follows the layout: every path deploy/Dockerfile copies exists, every
   workspace member is copied (cargo needs them all), and every path .dockerignore names is a
   directory of the repository or a build output. Route modules (HTTP only) never import
   `startup`, and no two route modules import each other in a cycle.
5. deploy/nginx.conf.template renders and passes `nginx -t` (skipped when nginx is absent), and
   serves exactly the browser page's files from the web root that docker-compose.yml mounts.

Every problem is listed; the exit status is 1 when there is any, 2 when a tool is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

try:
    import yaml
except ImportError:
    sys.exit("check_config: PyYAML is missing: pip install check-jsonschema pyyaml")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
# The Redis Sentinel override of docker-compose.yml (with its `ha` profile), and the start-up
# scripts of the Sentinel deployment that it and deploy/k8s/redis-sentinel.yaml share.
COMPOSE_HA = ROOT / "deploy" / "compose.ha.yml"
REDIS_HA_SCRIPTS = {
    "redis.sh": ROOT / "deploy" / "redis-ha" / "redis.sh",
    "sentinel.sh": ROOT / "deploy" / "redis-ha" / "sentinel.sh",
}
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "deploy" / "k8s"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
WEB_ROOT = ROOT / "deploy" / "web"
# The browser page: the only files the gateway serves itself, each at an exact path.
WEB_FILES = {"/": "index.html", "/app.js": "app.js", "/app.css": "app.css"}

# The variables each service reads and their defaults, from the configuration table in
# docs/api.md (None: no default value, the feature is off when unset). Keep in sync with that
# table; check_sources() below fails when the table or the services' config.rs name a variable
# missing here.
COMMON = {
    "LISTEN_ADDR": None,  # per service, below
    "DATABASE_URL": "sqlite://data/<service>.db",
    "REDIS_URL": None,
    "REDIS_KEY_PREFIX": "authbooks:",
    "JWT_ISSUER": "AUTH_PUBLIC_URL",
    # auth-service's public URL: the default issuer, so books-service reads it too.
    "AUTH_PUBLIC_URL": "http://127.0.0.1:8081",
    "JWT_AUDIENCE": "authbooks-api",
    "JWT_LEEWAY": "30",
    "HTTP_WORKERS": "one per core",
    "RUST_LOG": "info",
}
VARIABLES = {
    "auth-service": {
        **COMMON,
        "LISTEN_ADDR": "0.0.0.0:8081",
        "AUTH_KEYS_DIR": "./data/keys",
        "ACCESS_TOKEN_TTL": "900",
        "REFRESH_TOKEN_TTL": "2592000",
        "JWKS_MAX_AGE": "300",
        "AUTH_BOOTSTRAP_ADMIN_USERNAME": None,
        "AUTH_BOOTSTRAP_ADMIN_PASSWORD": None,
        "AUTH_COOKIE_SECURE": "true",
        "AUTH_KEY_ACTIVATION_DELAY": "max(900, JWKS_MAX_AGE)",
        "AUTH_KEYS_RELOAD_SECS": "10",
        "AUTH_REFRESH_GRACE": "5",
        "AUTH_FEED_HEARTBEAT_SECS": "2",
        "AUTH_TRUSTED_PROXIES": None,
        "AUTH_CLIENT_SECRET_KEY": None,
        "AUTH_MFA_KEY": None,
        "AUTH_MFA_PREVIOUS_KEYS": None,
        "AUDIT_RETENTION_DAYS": "90",
        "AUTH_PRUNE_INTERVAL_SECS": "600",
        "AUTH_ARGON2_CGROUP": None,
        "AUTH_LOGIN_LIMIT_USERNAME": "5",
        "AUTH_LOGIN_LIMIT_ADDRESS": "100",
        "AUTH_REGISTER_LIMIT_ADDRESS": "10",
        "AUTH_PASSWORD_MIN_SCORE": "3",
        "REDIS_WAIT_REPLICAS": "1 with redis+sentinel://, else 0",
        "REDIS_WAIT_TIMEOUT_MS": "1000",
    },
    "books-service": {
        **COMMON,
        "LISTEN_ADDR": "0.0.0.0:8082",
        "JWKS_URL": "http://127.0.0.1:8081/.well-known/jwks.json",
        "JWKS_REFETCH_COOLDOWN": "30",
        "VERIFIED_TOKEN_CACHE": "1024",
        "BOOK_CACHE_ENTRIES": "10000",
        "REVOCATION_STALENESS_MS": "5000",
        "BOOKS_ALLOW_NO_REVOCATIONS": "false",
        "REVOCATION_FEED_URL": None,
        "REVOCATION_FEED_CLIENT_ID": None,
        "REVOCATION_FEED_CLIENT_SECRET": None,
        "REVOCATION_FEED_TOKEN_URL": None,
    },
}
PORTS = {"auth-service": 8081, "books-service": 8082}
HEALTH_PATHS = {"/healthz", "/readyz"}

# Variables whose default is wrong inside a container, so a deployment must set them: the
# database (the SQLite default is inside a read-only image), Redis (revocations must reach
# books-service), where the keys persist, where books-service finds the JWKS, and the address.
MUST_SET = {
    "auth-service": {"LISTEN_ADDR", "DATABASE_URL", "REDIS_URL", "AUTH_KEYS_DIR"},
    "books-service": {"LISTEN_ADDR", "DATABASE_URL", "REDIS_URL", "JWKS_URL"},
}
# Off when unset, and fine that way.
OPTIONAL = {"AUTH_BOOTSTRAP_ADMIN_USERNAME", "AUTH_BOOTSTRAP_ADMIN_PASSWORD", "AUTH_CLIENT_SECRET_KEY"}
# A host's cgroup layout is the operator's: a container sees none it could name.
OPTIONAL |= {"AUTH_ARGON2_CGROUP"}
# The second-factor key: a file in the keys directory when unset; previous keys only for rotation.
OPTIONAL |= {"AUTH_MFA_KEY", "AUTH_MFA_PREVIOUS_KEYS"}
# books-service's revocation feed, the alternative to REDIS_URL where Redis is out of reach.
OPTIONAL |= {
    "REVOCATION_FEED_URL",
    "REVOCATION_FEED_CLIENT_ID",
    "REVOCATION_FEED_CLIENT_SECRET",
    "REVOCATION_FEED_TOKEN_URL",
}
# In docker-compose.yml the gateway has a fixed address, which auth-service must trust so that
# login limits see the client behind it. (Kubernetes has no fixed proxy address to list.)
COMPOSE_MUST_SET = {"auth-service": {"AUTH_TRUSTED_PROXIES"}, "books-service": set()}
# Settings that must be equal on both services.
MUST_AGREE = ("REDIS_KEY_PREFIX", "JWT_ISSUER", "JWT_AUDIENCE", "AUTH_PUBLIC_URL")
# Opt-outs a deployment must never take: books-service without revocations accepts revoked tokens.
NEVER_TRUE = {"books-service": {"BOOKS_ALLOW_NO_REVOCATIONS"}, "auth-service": set()}
# The widest range AUTH_TRUSTED_PROXIES may name in deploy/k8s (the ingress controller pods only).
NARROWEST_TRUST = {4: 24, 6: 64}
# NetworkPolicy: the namespace and pod labels of the ingress controller (ingress-nginx), and the
# data stores only the services may reach, when they run in the namespace.
INGRESS_CONTROLLER = {
    "namespace": {"kubernetes.io/metadata.name": "ingress-nginx"},
    "pods": {"app.kubernetes.io/name": "ingress-nginx"},
}
DATA_STORES = {"postgresql": 5432, "redis": 6379, "redis-sentinel": 26379}
# Besides the two services, who may reach each data store: Redis's own members (replicas copy
# from the master, the sentinels watch every server, servers ask the sentinels at start).
DATA_STORE_PEERS = {
    "postgresql": set(),
    "redis": {"redis", "redis-sentinel"},
    "redis-sentinel": {"redis", "redis-sentinel"},
}

SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
# Names that contain one of those words but hold no secret.
NOT_SECRET = {
    "AUTH_KEYS_DIR",
    "AUTH_KEYS_RELOAD_SECS",
    "AUTH_KEY_ACTIVATION_DELAY",
    "REDIS_KEY_PREFIX",
    "ACCESS_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "REVOCATION_FEED_TOKEN_URL",
    "AUTH_PASSWORD_MIN_SCORE",
}

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://([^/@\s:]*):([^@\s]*)@", re.I)


class Report:
    """Counts checks; prints failures and notes, and every passing check with --verbose."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.passed = 0
        self.failed: list[str] = []
        self._title = ""
        self._counts = [0, 0]

    def section(self, title: str) -> None:
        self._close()
        self._title, self._counts = title, [0, 0]
        print(f"== {title}")

    def _close(self) -> None:
        if self._title:
            ok, bad = self._counts
            print(f"   {ok} ok" + (f", {bad} failed" if bad else ""))

    def check(self, ok: bool, what: str, problem: str = "") -> bool:
        if ok:
            self.passed += 1
            self._counts[0] += 1
            if self.verbose:
                print(f"ok    {what}")
        else:
            self._counts[1] += 1
            self.failed.append(f"{what}: {problem}" if problem else what)
            print(f"FAIL  {what}{': ' + problem if problem else ''}")
        return ok

    def note(self, text: str) -> None:
        print(f"note  {text}")

    def finish(self) -> int:
        self._close()
        print(f"\ncheck_config: {self.passed} passed, {len(self.failed)} failed")
        return 1 if self.failed else 0


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return name not in NOT_SECRET and any(word in upper for word in SECRET_WORDS)


def is_pure_reference(value: str) -> bool:
    """`${VAR}`, `${VAR:?message}` or `${VAR:-}`: the value comes from outside, nothing literal."""
    m = REF.fullmatch(value.strip())
    return bool(m) and (m.group(2) is None or "?" in m.group(2) or m.group(3) == "")


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def default_of(value: str) -> str:
    """The value compose would use with an empty .env: references replaced by their default."""

    def sub(m: re.Match) -> str:
        return m.group(3) if m.group(2) and "-" in m.group(2) else f"<{m.group(1)}>"

    return REF.sub(sub, value)


def strings(node, path=""):
    """Every (path, string) in a parsed YAML tree, with compose's `$$` escapes (a literal `$`
    for the container's shell) removed, since compose does not interpolate them."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node.replace("$$", "")


def health_urls(test) -> list[tuple[int, str]]:
    text = " ".join(test) if isinstance(test, list) else str(test)
    return [
        (int(p), path) for p, path in re.findall(r"https?://[^/\s:\"']+:(\d+)(/[^\s\"']*)", text)
    ]


# --- 1. schema -------------------------------------------------------------------------------


def check_schema(r: Report) -> None:
    r.section("docker-compose.yml against the Compose specification")
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        if not shutil.which("check-jsonschema"):
            sys.exit(
                "check_config: check-jsonschema is missing: pip install check-jsonschema pyyaml"
            )
        cmd = ["check-jsonschema"]
    else:
        cmd = [sys.executable, "-m", "check_jsonschema"]
    for path in (COMPOSE, COMPOSE_HA):
        run = subprocess.run(
            [*cmd, "--builtin-schema", "vendor.compose-spec", str(path)],
            capture_output=True,
            text=True,
        )
        output = (run.stdout + run.stderr).strip()
        r.check(
            run.returncode == 0,
            f"{path.relative_to(ROOT)}: check-jsonschema --builtin-schema vendor.compose-spec",
            output,
        )


# --- 2. compose against the services -----------------------------------------------------------


def check_sources(r: Report) -> None:
    r.section("variable list against docs/api.md and the services' config.rs")
    reference = ROOT / "docs" / "api.md"
    if reference.exists():
        text = reference.read_text()
        table = text.split("## Configuration", 1)[-1].split("\n## ", 1)[0]
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 3 or not cells[0].startswith("`"):
                continue
            names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
            scope = cells[1]
            services = {
                "both": list(VARIABLES),
                "auth": ["auth-service"],
                "books": ["books-service"],
            }.get(scope)
            if services is None:
                r.note(f"docs/api.md row for {names} is for {scope!r}, not checked")
                continue
            for name in names:
                for service in services:
                    r.check(
                        name in VARIABLES.get(service, {}),
                        f"docs/api.md {name} ({scope}) is in VARIABLES[{service!r}]",
                        "add it to VARIABLES in deploy/check_config.py and to the deployments",
                    )
    else:
        r.note("docs/api.md not found; its table not compared")

    shared = ROOT / "shared" / "src" / "config.rs"
    read_by = {
        "auth-service": [ROOT / "auth-service" / "src" / "config.rs", shared],
        "books-service": [ROOT / "books-service" / "src" / "config.rs", shared],
    }
    call = re.compile(r"\b(?:get|string|seconds|var)\(\s*\"([A-Z][A-Z0-9_]+)\"")
    for service, files in read_by.items():
        names = set()
        for path in files:
            if path.exists():
                # Unit tests below #[cfg(test)] build their own maps; only the real reads count.
                names |= set(call.findall(path.read_text().split("#[cfg(test)]", 1)[0]))
        if not names:
            r.note(f"{service}: no config.rs found; sources not compared")
        for name in sorted(names):
            r.check(
                name in VARIABLES[service],
                f"{service} reads {name}, which VARIABLES lists",
                "add it to VARIABLES in deploy/check_config.py and to the deployments",
            )


def check_compose(r: Report) -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose.get("services", {})
    named_volumes = set((compose.get("volumes") or {}).keys())
    settings: dict[str, dict[str, str]] = {}

    for name, port in PORTS.items():
        r.section(f"docker-compose.yml: {name}")
        svc = services.get(name)
        if not r.check(svc is not None, f"service {name} exists"):
            continue
        env = environment(svc)
        settings[name] = env
        known = VARIABLES[name]
        unknown = sorted(set(env) - set(known))
        r.check(not unknown, "sets only variables the service reads", f"unknown: {unknown}")
        for var, default in known.items():
            r.check(
                var in env or default is not None or var in OPTIONAL,
                f"{var} is set or has a default",
                "not set and the service has no default",
            )
        for var in sorted(MUST_SET[name] | COMPOSE_MUST_SET[name]):
            r.check(
                var in env and env[var].strip() != "",
                f"{var} is set explicitly",
                "its default does not work in a container",
            )
        for var in sorted(NEVER_TRUE[name]):
            r.check(
                default_of(env.get(var, "false")).strip().lower() not in ("true", "1"),
                f"{var} is not turned on",
                "a deployment must not run without its safety check",
            )

        listen = default_of(env.get("LISTEN_ADDR", ""))
        r.check(listen.endswith(f":{port}"), f"LISTEN_ADDR listens on {port}", repr(listen))
        exposed = [str(p).split("/")[0].split(":")[-1] for p in svc.get("expose", [])]
        exposed += [str(p).split("/")[0].split(":")[-1] for p in svc.get("ports", [])]
        r.check(exposed == [] or set(exposed) == {str(port)}, f"exposes only {port}", str(exposed))

        test = (svc.get("healthcheck") or {}).get("test")
        urls = health_urls(test) if test else []
        r.check(bool(urls), "has an HTTP healthcheck", repr(test))
        for p, path in urls:
            r.check(
                p == port and path in HEALTH_PATHS,
                f"healthcheck URL :{p}{path}",
                f"want port {port} and one of {sorted(HEALTH_PATHS)}",
            )

        build = svc.get("build") or {}
        if build:
            dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            r.check(dockerfile.exists(), f"build file {dockerfile.relative_to(ROOT)} exists")
            r.check((build.get("args") or {}).get("SERVICE") == name, f"build arg SERVICE={name}")

        if name == "auth-service":
            keys_dir = env.get("AUTH_KEYS_DIR", "")
            mounted = [
                v
                for v in svc.get("volumes", [])
                if isinstance(v, str)
                and v.split(":")[0] in named_volumes
                and v.split(":")[1] == keys_dir
            ]
            r.check(bool(mounted), f"a named volume is mounted at AUTH_KEYS_DIR ({keys_dir})")
            gateway_nets = (services.get("gateway") or {}).get("networks") or {}
            gateway_ips = (
                {default_of(str((n or {}).get("ipv4_address", ""))) for n in gateway_nets.values()}
                if isinstance(gateway_nets, dict)
                else set()
            )
            trusted = set(
                default_of(env.get("AUTH_TRUSTED_PROXIES", "")).replace(" ", "").split(",")
            )
            r.check(
                bool(trusted & gateway_ips),
                "AUTH_TRUSTED_PROXIES is the gateway's fixed address",
                f"{sorted(trusted)} vs gateway {sorted(gateway_ips)}",
            )
        if name == "books-service":
            jwks = urlsplit(default_of(env.get("JWKS_URL", "")))
            r.check(
                jwks.hostname == "auth-service"
                and jwks.port == PORTS["auth-service"]
                and jwks.path == "/.well-known/jwks.json",
                "JWKS_URL points at auth-service:8081/.well-known/jwks.json",
                jwks.geturl(),
            )

    if len(settings) == 2:
        r.section("docker-compose.yml: both services")
        auth, books = settings["auth-service"], settings["books-service"]
        for var in MUST_AGREE:
            r.check(
                default_of(auth.get(var, "")) == default_of(books.get(var, "")),
                f"{var} is the same on both",
            )
        dbs = [urlsplit(default_of(s.get("DATABASE_URL", ""))).path for s in (auth, books)]
        r.check(
            dbs[0] != dbs[1], "separate databases (each runs its own diesel migrations)", str(dbs)
        )

    r.section("docker-compose.yml: dependencies and health")
    for name, svc in services.items():
        r.check(bool((svc.get("healthcheck") or {}).get("test")), f"{name} has a healthcheck")
        deps = svc.get("depends_on")
        if deps is None:
            continue
        if not r.check(
            isinstance(deps, dict),
            f"{name}: depends_on uses the long form",
            "a list cannot say condition: service_healthy",
        ):
            continue
        for dep, spec in deps.items():
            r.check(
                (spec or {}).get("condition") == "service_healthy",
                f"{name} waits for {dep} to be healthy",
            )
            r.check(
                bool((services.get(dep, {}).get("healthcheck") or {}).get("test")),
                f"{dep} (a dependency of {name}) has a healthcheck",
            )
    redis = " ".join(map(str, (services.get("redis") or {}).get("command") or []))
    r.check(re.search(r"--appendonly\s+yes", redis) is not None, "redis runs with --appendonly yes")
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0] if isinstance(v, str) else str(v.get("source", ""))
            if source.startswith((".", "/")):
                r.check((ROOT / source).exists(), f"{name}: bind-mounted {source} exists")

    r.section("docker-compose.yml: secrets and references")
    for path, value in strings(compose):
        key = path.rsplit(".", 1)[-1]
        if is_secret_name(key):
            r.check(
                is_pure_reference(value),
                f"{path} comes from the environment",
                f"literal or defaulted secret {value!r}",
            )
        for _user, password in URL_CREDENTIALS.findall(value):
            r.check(
                is_pure_reference(password),
                f"{path}: URL password is a reference",
                "a password written into a URL",
            )
        for m in REF.finditer(value):
            r.check(
                m.group(2) is not None,
                f"{path}: ${{{m.group(1)}}} has a default or is required",
                "use ${VAR:-default} or ${VAR:?message}",
            )
    required = sorted(
        {
            m.group(1)
            for _, v in strings(compose)
            for m in REF.finditer(v)
            if m.group(2) and "?" in m.group(2)
        }
    )
    example = {}
    if r.check(ENV_EXAMPLE.exists(), ".env.example exists"):
        for line in ENV_EXAMPLE.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                example[k.strip()] = v.strip()
    for var in required:
        r.check(var in example, f"required {var} is listed in .env.example")
    for var, value in example.items():
        if is_secret_name(var):
            r.check(value == "", f".env.example leaves {var} empty", "holds a value")
    gitignore = ROOT / ".gitignore"
    r.check(gitignore.exists() and ".env" in gitignore.read_text().split(), ".env is git-ignored")
    return compose


def sentinel_url(value: str) -> tuple[list[tuple[str, int]], str] | None:
    """The sentinels and master name of a `redis+sentinel://[:PASSWORD@]H:P[,H:P...]/NAME[/DB]`
    value (compose references left as they are), or None when it is not one."""
    m = re.fullmatch(r"redis\+sentinel://(?:[^@]*@)?([^/]+)/([^/]+)(?:/\d*)?", value.strip())
    if not m:
        return None
    hosts = []
    for item in m.group(1).split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            return None
        hosts.append((host, int(port)))
    return hosts, m.group(2)


def check_compose_ha(r: Report, compose: dict) -> None:
    r.section("deploy/compose.ha.yml: Redis Sentinel (profile ha)")
    for name, path in REDIS_HA_SCRIPTS.items():
        r.check(path.exists(), f"deploy/redis-ha/{name} exists")
    if not r.check(COMPOSE_HA.exists(), "deploy/compose.ha.yml exists"):
        return
    override = yaml.safe_load(COMPOSE_HA.read_text())
    base = compose.get("services", {})
    services = override.get("services", {})
    ha = {n for n, svc in base.items() if "ha" in (svc.get("profiles") or [])}
    sentinels = {n for n in ha if "sentinel.sh" in " ".join(map(str, base[n].get("command") or []))}
    r.check(len(sentinels) >= 3, "the ha profile runs at least three sentinels", str(sorted(sentinels)))
    r.check(bool(ha - sentinels), "the ha profile runs a replica", str(sorted(ha)))
    for name in services:
        r.check(name in base, f"{name} (overridden) is a service of docker-compose.yml")
    masters = set()
    for name in sorted(ha | {"redis"}):
        svc = {**base.get(name, {}), **services.get(name, {})}
        env = environment(svc)
        masters.add(env.get("REDIS_MASTER_NAME", ""))
        r.check(
            (svc.get("networks") or []) == ["backend"],
            f"{name}: on the internal backend network only",
        )
        r.check(bool((svc.get("healthcheck") or {}).get("test")), f"{name} has a healthcheck")
        if name not in sentinels:
            listed = set(env.get("REDIS_SENTINELS", "").split())
            r.check(
                listed == {f"{s}:26379" for s in sentinels},
                f"{name}: REDIS_SENTINELS names every sentinel",
                str(sorted(listed)),
            )
        r.check(
            env.get("REDIS_ANNOUNCE") == name, f"{name}: announces itself as {name}", env.get("REDIS_ANNOUNCE", "")
        )
    r.check(len(masters) == 1 and "" not in masters, "one master name everywhere", str(masters))
    for name in PORTS:
        svc = services.get(name) or {}
        env = environment(svc)
        unknown = sorted(set(env) - set(VARIABLES[name]))
        r.check(not unknown, f"{name}: sets only variables the service reads", f"unknown: {unknown}")
        parsed = sentinel_url(env.get("REDIS_URL", ""))
        if not r.check(parsed is not None, f"{name}: REDIS_URL is redis+sentinel://", env.get("REDIS_URL", "")):
            continue
        hosts, master = parsed
        r.check(
            set(hosts) == {(s, 26379) for s in sentinels},
            f"{name}: REDIS_URL names every sentinel of the ha profile",
            str(hosts),
        )
        r.check(master in masters, f"{name}: REDIS_URL names the monitored master ({master})")
        deps = svc.get("depends_on") or {}
        for sentinel in sorted(sentinels):
            r.check(
                (deps.get(sentinel) or {}).get("condition") == "service_healthy",
                f"{name} waits for {sentinel} to be healthy",
            )
    for path, value in strings(override):
        for _user, password in URL_CREDENTIALS.findall(value):
            r.check(
                is_pure_reference(password),
                f"compose.ha.yml{path}: URL password is a reference",
                "a password written into a URL",
            )
        key = path.rsplit(".", 1)[-1]
        if is_secret_name(key):
            r.check(is_pure_reference(value), f"compose.ha.yml{path} comes from the environment")


# --- 3. Kubernetes -----------------------------------------------------------------------------


def check_k8s(r: Report) -> None:
    r.section("deploy/k8s")
    docs = []
    files = sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))
    r.check(bool(files), "deploy/k8s holds manifests")
    for path in files:
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as err:
            r.check(False, f"{path.name} parses", str(err))
            continue
        for doc in loaded:
            meta = doc.get("metadata") or {}
            label = f"{path.name}: {doc.get('kind')}/{meta.get('name')}"
            r.check(
                bool(doc.get("apiVersion")) and bool(doc.get("kind")) and bool(meta.get("name")),
                f"{label} has apiVersion, kind and metadata.name",
            )
            docs.append((path, doc))

    if shutil.which("kubernetes-validate"):
        run = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", *map(str, files)],
            capture_output=True,
            text=True,
        )
        r.check(
            run.returncode == 0,
            "kubernetes-validate --strict (Kubernetes API schemas)",
            (run.stdout + run.stderr).strip(),
        )
    else:
        r.note(
            "kubernetes-validate is not installed: skipped the Kubernetes API schema check "
            "(pip install kubernetes-validate)"
        )

    by_kind: dict[str, dict[str, dict]] = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    sources = {("configMapRef", n): d for n, d in by_kind.get("ConfigMap", {}).items()}
    sources |= {("secretRef", n): d for n, d in by_kind.get("Secret", {}).items()}
    values: dict[str, dict[str, str]] = {}
    pod_labels: dict[str, dict[str, str]] = {}

    for name, port in PORTS.items():
        dep = by_kind.get("Deployment", {}).get(name)
        if not r.check(dep is not None, f"Deployment {name} exists"):
            continue
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        pod_labels[name] = labels
        r.check(spec.get("replicas", 1) >= 2, f"{name}: at least 2 replicas")
        r.check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        for c in pod["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            r.check(port in ports.values(), f"{name}: container port {port}")
            for probe, want in (
                ("readinessProbe", {"/readyz"}),
                ("livenessProbe", {"/healthz"}),
                ("startupProbe", HEALTH_PATHS),
            ):
                get = (c.get(probe) or {}).get("httpGet")
                if get is None:
                    r.check(probe == "startupProbe", f"{name}: {probe} is an HTTP probe")
                    continue
                probe_port = ports.get(get.get("port"), get.get("port"))
                r.check(
                    get.get("path") in want and probe_port == port,
                    f"{name}: {probe} on {get.get('path')} port {probe_port}",
                    f"want {sorted(want)} on {port}",
                )
            sc = c.get("securityContext") or {}
            r.check(
                sc.get("readOnlyRootFilesystem") is True
                and sc.get("allowPrivilegeEscalation") is False,
                f"{name}: read-only root filesystem, no privilege escalation",
            )
            r.check(
                bool((c.get("resources") or {}).get("requests", {}).get("cpu")),
                f"{name}: CPU request (the autoscaler needs it)",
            )
            env: dict[str, str] = {}
            for src in c.get("envFrom", []):
                kind = "configMapRef" if "configMapRef" in src else "secretRef"
                ref = (src.get(kind) or {}).get("name")
                source = sources.get((kind, ref))
                if r.check(source is not None, f"{name}: envFrom {kind} {ref} is defined"):
                    env.update(
                        {
                            k: str(v)
                            for k, v in {
                                **(source.get("data") or {}),
                                **(source.get("stringData") or {}),
                            }.items()
                        }
                    )
            env.update({e["name"]: str(e.get("value", "<from ref>")) for e in c.get("env", [])})
            values[name] = env
            unknown = sorted(set(env) - set(VARIABLES[name]))
            r.check(not unknown, f"{name}: gets only variables it reads", f"unknown: {unknown}")
            for var in sorted(MUST_SET[name]):
                r.check(bool(env.get(var)), f"{name}: {var} is provided")
            for var in sorted(NEVER_TRUE[name]):
                r.check(
                    env.get(var, "false").strip().lower() not in ("true", "1"),
                    f"{name}: {var} is not turned on",
                )
            r.check(
                env.get("LISTEN_ADDR", "").endswith(f":{port}"), f"{name}: LISTEN_ADDR on {port}"
            )
            if name == "auth-service":
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                vol = next(
                    (
                        v
                        for v in pod.get("volumes", [])
                        if v["name"] == mounts.get(env.get("AUTH_KEYS_DIR"))
                    ),
                    None,
                )
                r.check(
                    bool(vol and vol.get("secret")), f"{name}: a Secret is mounted at AUTH_KEYS_DIR"
                )
                trusted = env.get("AUTH_TRUSTED_PROXIES", "")
                r.check(
                    "CHANGE-ME" in trusted or trust_is_narrow(trusted),
                    f"{name}: AUTH_TRUSTED_PROXIES is a placeholder or names only narrow ranges",
                    f"{trusted!r}: at most /{NARROWEST_TRUST[4]} (IPv4) or "
                    f"/{NARROWEST_TRUST[6]} (IPv6), the ingress controller pods only",
                )
            if name == "books-service":
                jwks = urlsplit(env.get("JWKS_URL", ""))
                r.check(
                    (jwks.hostname or "").split(".")[0] == "auth-service"
                    and jwks.port == PORTS["auth-service"]
                    and jwks.path == "/.well-known/jwks.json",
                    f"{name}: JWKS_URL points at the auth-service Service",
                )

        svc = by_kind.get("Service", {}).get(name)
        if r.check(svc is not None, f"Service {name} exists"):
            sel = svc["spec"].get("selector", {})
            r.check(sel.items() <= labels.items() and bool(sel), f"Service {name} selects the pods")
            r.check(
                any(p["port"] == port for p in svc["spec"]["ports"]), f"Service {name} port {port}"
            )
        hpa = by_kind.get("HorizontalPodAutoscaler", {}).get(name)
        if r.check(hpa is not None, f"HorizontalPodAutoscaler {name} exists"):
            r.check(
                hpa["apiVersion"] == "autoscaling/v2"
                and hpa["spec"]["scaleTargetRef"]["name"] == name
                and hpa["spec"].get("minReplicas", 1) >= 2,
                f"HPA {name}: autoscaling/v2, targets it, min 2",
            )
        pdb = by_kind.get("PodDisruptionBudget", {}).get(name)
        if r.check(pdb is not None, f"PodDisruptionBudget {name} exists"):
            sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
            r.check(sel.items() <= labels.items() and bool(sel), f"PDB {name} selects the pods")

    if len(values) == 2:
        for var in MUST_AGREE:
            r.check(
                values["auth-service"].get(var) == values["books-service"].get(var),
                f"{var} is the same on both",
            )

    routes = {}
    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                routes[p["path"].rstrip("/")] = p["backend"]["service"]["name"]
    want = {
        "/auth": "auth-service",
        "/.well-known": "auth-service",
        "/oauth": "auth-service",
        "/revocations": "auth-service",
        "/books": "books-service",
    }
    r.check(
        routes == want,
        "Ingress routes /auth, /.well-known, /oauth and /revocations to auth, /books to books",
        str(routes),
    )

    check_network_policies(r, by_kind.get("NetworkPolicy", {}), pod_labels)
    check_k8s_sentinel(r, by_kind, values)

    for path, doc in docs:
        if doc["kind"] == "Secret":
            for key, value in {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.items():
                r.check(
                    "CHANGE-ME" in str(value) or "CHANGEME" in str(key),
                    f"{path.name}: Secret {doc['metadata']['name']} {key} is a placeholder",
                    "real values do not belong in the repository",
                )


def check_k8s_sentinel(r: Report, by_kind: dict, values: dict) -> None:
    """redis-sentinel.yaml: the scripts are deploy/redis-ha's, and the services' REDIS_URL names
    every sentinel pod and the monitored master."""
    scripts = by_kind.get("ConfigMap", {}).get("redis-ha-scripts")
    if scripts is None:
        r.note("deploy/k8s has no redis-ha-scripts ConfigMap: Redis Sentinel not in the manifests")
        return
    r.section("deploy/k8s: Redis Sentinel")
    for name, path in REDIS_HA_SCRIPTS.items():
        r.check(
            path.exists() and (scripts.get("data") or {}).get(name) == path.read_text(),
            f"ConfigMap redis-ha-scripts {name} is deploy/redis-ha/{name}",
            "copy the file into the ConfigMap",
        )
    sentinels = by_kind.get("StatefulSet", {}).get("redis-sentinel")
    servers = by_kind.get("StatefulSet", {}).get("redis")
    if not (r.check(sentinels is not None, "StatefulSet redis-sentinel exists")
            and r.check(servers is not None, "StatefulSet redis exists")):
        return
    count = sentinels["spec"].get("replicas", 1)
    r.check(count >= 3, "at least three sentinels", str(count))
    r.check(servers["spec"].get("replicas", 1) >= 2, "a master and at least one replica")
    namespace = sentinels["metadata"].get("namespace", "default")
    service = sentinels["spec"]["serviceName"]
    want = {
        (f"redis-sentinel-{i}.{service}.{namespace}.svc.cluster.local", 26379) for i in range(count)
    }
    masters = set()
    for stateful in (servers, sentinels):
        for c in stateful["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            masters.add(env.get("REDIS_MASTER_NAME"))
            first = f"{servers['metadata']['name']}-0.{servers['spec']['serviceName']}."
            r.check(
                env.get("REDIS_INITIAL_MASTER", "").startswith(first),
                f"{stateful['metadata']['name']}: the first master is {first}..",
                str(env.get("REDIS_INITIAL_MASTER")),
            )
    r.check(len(masters) == 1 and None not in masters, "one master name everywhere", str(masters))
    for name in PORTS:
        parsed = sentinel_url(values.get(name, {}).get("REDIS_URL", ""))
        if not r.check(parsed is not None, f"{name}: REDIS_URL is redis+sentinel://"):
            continue
        hosts, master = parsed
        r.check(set(hosts) == want, f"{name}: REDIS_URL names every sentinel pod", str(hosts))
        r.check(master in masters, f"{name}: REDIS_URL names the monitored master ({master})")


def trust_is_narrow(value: str) -> bool:
    """Every entry of an AUTH_TRUSTED_PROXIES list is an address or a range no wider than
    NARROWEST_TRUST."""
    import ipaddress

    entries = [e.strip() for e in value.split(",") if e.strip()]
    try:
        nets = [ipaddress.ip_network(e, strict=False) for e in entries]
    except ValueError:
        return False
    return bool(nets) and all(n.prefixlen >= NARROWEST_TRUST[n.version] for n in nets)


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches `labels`."""
    selector = selector or {}
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in vals,
            "NotIn": key not in labels or labels[key] not in vals,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True


def selects_only(selector: dict | None, names: set[str]) -> bool:
    """Whether a pod selector can only match pods named (app.kubernetes.io/name) in `names`."""
    selector = selector or {}
    named = (selector.get("matchLabels") or {}).get("app.kubernetes.io/name")
    if named is not None:
        return named in names
    return any(
        e.get("key") == "app.kubernetes.io/name"
        and e.get("operator") == "In"
        and set(e.get("values") or []) <= names
        for e in selector.get("matchExpressions") or []
    )


def is_ingress_controller(peer: dict) -> bool:
    """A `from` peer that is the ingress controller's namespace (and, optionally, its pods)."""
    namespace = peer.get("namespaceSelector") or {}
    return (
        namespace.get("matchLabels") == INGRESS_CONTROLLER["namespace"]
        and not namespace.get("matchExpressions")
        and selects(peer.get("podSelector"), INGRESS_CONTROLLER["pods"])
    )


def admitted(policies: list[dict]) -> list[tuple[dict, set]]:
    """(peer, ports) for every `from` peer of the policies' ingress rules; a rule without ports
    admits every port (None)."""
    out = []
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            ports = {p.get("port") for p in rule.get("ports") or []} or {None}
            for peer in rule.get("from") or [{}]:
                out.append((peer, ports))
    return out


def check_network_policies(r: Report, policies: dict, pod_labels: dict) -> None:
    r.section("deploy/k8s: NetworkPolicies")
    for name, policy in policies.items():
        spec = policy.get("spec") or {}
        types = set(spec.get("policyTypes") or [])
        r.check(
            "podSelector" in spec and bool(types) and types <= {"Ingress", "Egress"},
            f"NetworkPolicy {name}: podSelector and policyTypes",
        )
        if "Egress" in types:
            r.check(
                any(
                    p.get("port") == 53
                    for rule in spec.get("egress") or []
                    for p in rule.get("ports") or []
                ),
                f"NetworkPolicy {name}: restricting egress still allows DNS (port 53)",
            )
    r.check(
        any(
            (p["spec"].get("podSelector") or {}) == {}
            and "Ingress" in (p["spec"].get("policyTypes") or [])
            and not p["spec"].get("ingress")
            for p in policies.values()
        ),
        "a default-deny ingress policy selects every pod of the namespace",
    )

    for name, port in PORTS.items():
        labels = pod_labels.get(name, {"app.kubernetes.io/name": name})
        mine = [
            p
            for p in policies.values()
            if (p["spec"].get("podSelector") or {}) != {} and selects(p["spec"]["podSelector"], labels)
        ]
        if not r.check(bool(mine), f"a NetworkPolicy selects the {name} pods"):
            continue
        # Books fetches auth's JWKS; nothing else in the namespace needs either service.
        peers_ok = {"books-service"} if name == "auth-service" else set()
        for peer, ports in admitted(mine):
            in_namespace = "namespaceSelector" not in peer and "ipBlock" not in peer
            r.check(
                is_ingress_controller(peer)
                or (in_namespace and peer and selects_only(peer.get("podSelector"), peers_ok)),
                f"{name}: admits only the ingress controller"
                + (" and books-service" if peers_ok else ""),
                f"also {peer or 'everyone'}",
            )
            r.check(ports == {port}, f"{name}: admits port {port} only", str(ports))
        r.check(
            any(is_ingress_controller(peer) for peer, _ in admitted(mine)),
            f"{name}: the ingress controller (namespace ingress-nginx) gets in",
        )

    for store, port in DATA_STORES.items():
        labels = {"app.kubernetes.io/name": store}
        mine = [
            p
            for p in policies.values()
            if (p["spec"].get("podSelector") or {}) != {} and selects(p["spec"]["podSelector"], labels)
        ]
        if not r.check(bool(mine), f"a NetworkPolicy selects the {store} pods"):
            continue
        peers = admitted(mine)
        allowed = set(PORTS) | DATA_STORE_PEERS[store]
        for peer, ports in peers:
            r.check(
                set(peer) == {"podSelector"} and selects_only(peer["podSelector"], allowed),
                f"{store}: admits only {', '.join(sorted(allowed))}",
                f"also {peer or 'everyone'}",
            )
            r.check(ports == {port}, f"{store}: admits port {port} only", str(ports))
        for service in PORTS:
            r.check(
                any(selects(peer.get("podSelector"), pod_labels.get(service, {})) for peer, _ in peers),
                f"{store}: {service} gets in",
            )


# --- 4. nginx ----------------------------------------------------------------------------------


def render(template: str, values: dict[str, str]) -> str:
    """envsubst restricted to `values`: other $names (nginx's own variables) are left alone."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", value)
        template = re.sub(r"\$" + name + r"(?![A-Za-z0-9_])", lambda _m, v=value: v, template)
    return template


def nginx_version() -> tuple[int, ...] | None:
    if not shutil.which("nginx"):
        return None
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(map(int, m.groups())) if m else (0, 0, 0)


def nginx_test(r: Report, version, what: str, values: dict[str, str], template: str) -> None:
    with tempfile.TemporaryDirectory(prefix="authbooks-nginx-") as tmp:
        values = {**values, "NGINX_PREFIX": tmp}
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(render(template, values))
        cmd = ["nginx", "-t", "-q", "-p", tmp + "/", "-c", str(conf)]
        if version >= (1, 19, 5):
            cmd[1:1] = ["-e", "stderr"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        r.check(run.returncode == 0, f"nginx -t with {what}", (run.stdout + run.stderr).strip())


def check_nginx(r: Report, compose: dict) -> None:
    r.section("deploy/nginx.conf.template")
    template = NGINX_TEMPLATE.read_text()
    body = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("#"))
    names = set(re.findall(r"\$\{([A-Z_]+)\}", body))
    gateway = (compose.get("services") or {}).get("gateway") or {}
    genv = environment(gateway)
    command = " ".join(map(str, gateway.get("command") or []))
    listed = set(re.findall(r"\$\$\{([A-Z_]+)\}", command)) or set(
        re.findall(r"\$\{([A-Z_]+)\}", command)
    )
    r.check(
        listed == names, "compose renders exactly the template's variables", f"{listed} vs {names}"
    )
    r.check(
        names <= set(genv),
        "the gateway service sets every template variable",
        str(sorted(names - set(genv))),
    )
    for needle, what in [
        (r"location /auth/ ", "routes /auth/"),
        (r"location /\.well-known/ ", "routes /.well-known/"),
        (r"location = /books ", "routes /books"),
        (r"location /books/ ", "routes /books/"),
        (r"client_max_body_size 64k;", "limits bodies to 64 KiB"),
        (r"X-Forwarded-For \$proxy_add_x_forwarded_for;", "passes X-Forwarded-For"),
        (r"proxy_set_header X-Request-Id ", "passes X-Request-Id"),
        (r"add_header X-Request-Id .* always;", "returns X-Request-Id"),
        (r"proxy_next_upstream_tries 2;", "retries once"),
        (r"server_tokens off;", "server_tokens off"),
    ]:
        r.check(re.search(needle, body) is not None, f"template {what}")
    static = re.findall(r"location (=?) ?(\S+) \{[^}]*?\broot\b", body)
    r.check(
        sorted(static) == sorted(("=", path) for path in WEB_FILES),
        "template serves exactly the page's files, each at an exact location",
        str(static),
    )
    r.check(re.search(r"\bautoindex on\b", body) is None, "template never lists a directory")
    for path, name in WEB_FILES.items():
        r.check((WEB_ROOT / name).is_file(), f"deploy/web/{name} exists (served at {path})")
    web_root = genv.get("WEB_ROOT", "")
    mounts = [str(v) for v in gateway.get("volumes", []) if isinstance(v, str)]
    r.check(
        f"./deploy/web:{web_root}:ro" in mounts,
        "the gateway mounts deploy/web read-only at WEB_ROOT",
        f"WEB_ROOT={web_root!r}, volumes {mounts}",
    )
    for status, code in [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "payload_too_large"),
        (502, "unavailable"),
        (504, "unavailable"),
    ]:
        r.check(
            re.search(rf"return {status} '\{{\"error\":\"{code}\",\"message\":\"[^\"]+\"\}}", body)
            is not None
            and re.search(rf"error_page [0-9 ]*\b{status}\b", body) is not None,
            f"template answers nginx's own {status} as JSON {code}",
        )

    version = nginx_version()
    if version is None:
        r.note("nginx is not installed: skipped `nginx -t` (apt-get install nginx-light)")
        return
    test_values = {
        "AUTH_SERVERS": "server 127.0.0.1:18081; server 127.0.0.1:28081;",
        "BOOKS_SERVERS": "server 127.0.0.1:18082; server 127.0.0.1:28082;",
        "GATEWAY_PORT": "18080",
        "NGINX_RESOLVER": "",
        "WEB_ROOT": str(WEB_ROOT),
    }
    nginx_test(r, version, "test values", test_values, template)
    if version >= (1, 27, 3):
        nginx_test(r, version, "docker-compose.yml's gateway values", genv, template)
    else:
        r.note(
            f"nginx {'.'.join(map(str, version))} predates `server ... resolve` (1.27.3): "
            "compose's gateway values not tested"
        )


# What .dockerignore may name although the repository does not hold it: build outputs and
# local state.
BUILD_OUTPUTS = {"target", "data", ".env", "fuzz/target"}


def check_layout(r: Report) -> None:
    r.section("build context follows the layout")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = set()
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] != ["COPY"] or any(w.startswith("--from") for w in words):
            continue
        for source in words[1:-1]:
            copied.add(source.rstrip("/"))
            r.check((ROOT / source).exists(), f"Dockerfile copies {source}", "no such path")
    manifest = (ROOT / "Cargo.toml").read_text()
    members = re.search(r"members\s*=\s*\[(.*?)\]", manifest, re.S)
    for member in re.findall(r'"([^"]+)"', members.group(1) if members else ""):
        r.check(any(member == c or member.startswith(c + "/") for c in copied),
                f"Dockerfile copies workspace member {member}", "cargo would not find it")
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#") or "*" in entry:
            continue
        r.check(entry in BUILD_OUTPUTS or (ROOT / entry).exists(),
                f".dockerignore names {entry}", "no such path in the repository")


def check_route_modules(r: Report) -> None:
    r.section("route modules are HTTP only")
    for service in ("auth-service", "books-service"):
        routes = ROOT / service / "src" / "routes"
        modules = {f.stem: f.read_text() for f in routes.glob("*.rs")}
        imports = {}
        for name, text in modules.items():
            r.check("crate::startup" not in text, f"{service}/src/routes/{name}.rs",
                    "imports startup (state lives in state.rs)")
            used = set(re.findall(r"(?:crate::routes::|super::)(\w+)", text))
            for group in re.findall(r"crate::routes::\{([^}]*)\}", text):
                used |= {w.strip() for w in group.split(",")}
            imports[name] = {m for m in used if m in modules and m != name}

        def cycle_from(start, node, seen):
            for nxt in imports.get(node, ()):
                if nxt == start or (nxt not in seen and cycle_from(start, nxt, seen | {nxt})):
                    return True
            return False

        for name in sorted(modules):
            r.check(not cycle_from(name, name, {name}), f"{service} route {name} is in no cycle",
                    f"imports lead back to it: {sorted(imports[name])}")


def main() -> int:
    r = Report(verbose="-v" in sys.argv[1:] or "--verbose" in sys.argv[1:])
    check_route_modules(r)
    check_schema(r)
    check_sources(r)
    check_layout(r)
    compose = check_compose(r)
    check_compose_ha(r, compose)
    check_k8s(r)
    check_nginx(r, compose)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
