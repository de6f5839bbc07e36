"""A local replica of auth-service's revocation list, fed by its revocation stream.

A background thread obtains a service token (client_credentials, scope `revocations:read`),
loads the snapshot (`GET /revocations`), then follows `GET /revocations/stream` from the
snapshot's cursor, reconnecting with `Last-Event-ID` so that no revocation is missed.

`is_revoked(claims)` answers from memory. It raises `RevocationsUnavailable` (fail closed)
until the snapshot is loaded, when the stream has been silent for `read_timeout` seconds (the
server sends a heartbeat at least every 15 s), and when the stream has been down for longer
than `reconnect_grace` seconds.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from datetime import datetime
from urllib.parse import quote_plus

import requests

log = logging.getLogger("revocations")


class RevocationsUnavailable(Exception):
    """The replica is not known to be up to date: refuse to decide."""


class CursorRejected(Exception):
    """The server no longer knows our cursor: reload the snapshot."""


def _timestamp(value) -> float | None:
    """Unix seconds from a number or an RFC 3339 string; None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class RevocationSet:
    """The revocation entries and the rules that apply them to a token's claims."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jtis: dict[str, float | None] = {}
        self._sids: dict[str, float | None] = {}
        # sub -> [(before, except_jti, expires_at)]
        self._users: dict[str, list[tuple[float, str | None, float | None]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._jtis.clear()
            self._sids.clear()
            self._users.clear()

    def add(self, entry: dict) -> None:
        kind = entry.get("kind")
        expires_at = _timestamp(entry.get("expires_at"))
        with self._lock:
            if kind == "token" and isinstance(entry.get("jti"), str):
                self._jtis[entry["jti"]] = expires_at
            elif kind == "session" and isinstance(entry.get("sid"), str):
                self._sids[entry["sid"]] = expires_at
            elif kind == "user" and isinstance(entry.get("sub"), str):
                before = _timestamp(entry.get("before"))
                if before is None:
                    log.warning("user revocation without a readable 'before': %r", entry)
                    before = math.inf  # fail closed: every token of this user so far
                cutoff = (before, entry.get("except_jti"), expires_at)
                self._users.setdefault(entry["sub"], []).append(cutoff)
            else:
                log.warning("ignoring unknown revocation entry %r", entry)

    def is_revoked(self, claims: dict) -> bool:
        jti, sid, sub, iat = (claims.get(k) for k in ("jti", "sid", "sub", "iat"))
        with self._lock:
            if jti is not None and jti in self._jtis:
                return True
            if sid is not None and sid in self._sids:
                return True
            for before, except_jti, _ in self._users.get(sub, ()):
                if except_jti is not None and jti == except_jti:
                    continue
                # `iat` is whole seconds: a token issued in the cut-off's second is refused.
                if not isinstance(iat, (int, float)) or iat <= math.floor(before):
                    return True
        return False

    def prune(self, now: float | None = None) -> None:
        """Drop the entries whose `expires_at` has passed (no token they cover is valid)."""
        now = time.time() if now is None else now

        def live(expires_at):
            return expires_at is None or expires_at > now

        with self._lock:
            self._jtis = {k: v for k, v in self._jtis.items() if live(v)}
            self._sids = {k: v for k, v in self._sids.items() if live(v)}
            users = {}
            for sub, cutoffs in self._users.items():
                kept = [c for c in cutoffs if live(c[2])]
                if kept:
                    users[sub] = kept
            self._users = users

    def __len__(self) -> int:
        with self._lock:
            return len(self._jtis) + len(self._sids) + sum(map(len, self._users.values()))


class SseParser:
    """Incremental text/event-stream parser (the WHATWG rules that matter here).

    `feed(bytes)` returns the dispatched events as (last_event_id, event_type, data); `data` is
    None for an event that only moved the id. Comments (heartbeats) produce nothing.
    """

    def __init__(self, last_event_id: str | None = None):
        self._buffer = b""
        self._data: list[str] = []
        self._event_type = ""
        self._id_buffer = last_event_id
        self.last_event_id = last_event_id

    def feed(self, chunk: bytes) -> list[tuple[str | None, str, str | None]]:
        self._buffer += chunk
        events = []
        while True:
            # A line ends at CRLF, LF or CR; a CR at the very end may be half of a CRLF.
            lf, cr = self._buffer.find(b"\n"), self._buffer.find(b"\r")
            cut = min(i for i in (lf, cr, len(self._buffer)) if i != -1)
            if cut == len(self._buffer):
                return events
            if cut == cr:
                if cut + 1 == len(self._buffer):
                    return events  # wait: maybe CRLF
                end = cut + 2 if self._buffer[cut + 1:cut + 2] == b"\n" else cut + 1
            else:
                end = cut + 1
            line = self._buffer[:cut].decode("utf-8", errors="replace")
            self._buffer = self._buffer[end:]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str):
        if line == "":
            data, event_type = self._data, self._event_type
            self._data, self._event_type = [], ""
            moved = self._id_buffer != self.last_event_id
            self.last_event_id = self._id_buffer
            if not data:
                return (self.last_event_id, "message", None) if moved else None
            return (self.last_event_id, event_type or "message", "\n".join(data))
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        return None


class ServiceToken:
    """A client_credentials access token, renewed shortly before it expires."""

    def __init__(self, session: requests.Session, token_endpoint: str, client_id: str,
                 client_secret: str, scope: str):
        self._session = session
        self._endpoint = token_endpoint
        # RFC 6749 section 2.3.1: form-encoded before they go into the Basic header.
        self._auth = (quote_plus(client_id), quote_plus(client_secret))
        self._scope = scope
        self._token: str | None = None
        self._renew_at = 0.0

    def get(self) -> str:
        if self._token is None or time.monotonic() >= self._renew_at:
            response = self._session.post(
                self._endpoint, auth=self._auth, timeout=10,
                data={"grant_type": "client_credentials", "scope": self._scope})
            response.raise_for_status()
            body = response.json()
            lifetime = float(body.get("expires_in", 60))
            self._token = body["access_token"]
            self._renew_at = time.monotonic() + max(lifetime * 0.8, lifetime - 60)
        return self._token

    def invalidate(self) -> None:
        self._token = None


class RevocationFeed:
    """Keeps a RevocationSet in step with auth-service's revocation stream."""

    def __init__(self, revocations_url: str, token_endpoint: str, client_id: str,
                 client_secret: str, *, read_timeout: float = 40.0, reconnect_grace: float = 5.0):
        self.url = revocations_url.rstrip("/")
        self.revocations = RevocationSet()
        self.read_timeout = read_timeout
        self.reconnect_grace = reconnect_grace
        self._session = requests.Session()
        self._token = ServiceToken(self._session, token_endpoint, client_id, client_secret,
                                   "revocations:read")
        self._cursor: str | None = None
        self._need_snapshot = True
        self._resume_with_query = False
        self._backoff = 0.2
        self._synced = False
        self._connected = False
        self._last_heard = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="revocation-feed", daemon=True)

    # -- what the application calls -------------------------------------------------------

    def start(self) -> "RevocationFeed":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        """Synced, and either streaming or disconnected for less than `reconnect_grace`."""
        if not self._synced:
            return False
        silent = time.monotonic() - self._last_heard
        return silent < (self.read_timeout if self._connected else self.reconnect_grace)

    def is_revoked(self, claims: dict) -> bool:
        if not self.ready():
            raise RevocationsUnavailable("the revocation list is not up to date")
        return self.revocations.is_revoked(claims)

    # -- the background thread ------------------------------------------------------------

    def _run(self) -> None:
        last_prune = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._need_snapshot:
                    self._load_snapshot()
                self._follow_stream()
            except CursorRejected as rejected:
                log.warning("cursor %r refused (%s); reloading the snapshot", self._cursor, rejected)
                self._need_snapshot = True
                continue
            except Exception as error:  # noqa: BLE001 - any failure: reconnect after a pause
                log.warning("revocation stream: %s; reconnecting", error)
            finally:
                if self._connected:
                    self._connected = False
                    self._mark_heard()  # the grace runs from the moment the stream dropped
            if time.monotonic() - last_prune > 60:
                self.revocations.prune()
                last_prune = time.monotonic()
            self._stop.wait(self._backoff * (0.5 + random.random()))
            self._backoff = min(self._backoff * 2, 5.0)

    def _get(self, url: str, headers: dict | None = None, **kwargs) -> requests.Response:
        for attempt in (1, 2):
            auth = {"Authorization": f"Bearer {self._token.get()}"}
            response = self._session.get(url, headers={**(headers or {}), **auth}, **kwargs)
            if response.status_code == 401 and attempt == 1:
                response.close()
                self._token.invalidate()  # expired or revoked service token: get another
                continue
            return response
        raise AssertionError("unreachable")

    def _load_snapshot(self) -> None:
        response = self._get(self.url, timeout=10)
        response.raise_for_status()
        body = response.json()
        self.revocations.clear()
        for entry in body["items"]:
            self.revocations.add(entry)
        self._cursor = body.get("cursor")
        self._need_snapshot = False
        self._resume_with_query = True
        self._mark_heard()
        self._synced = True
        log.info("revocation snapshot: %d entries, cursor %s", len(body["items"]), self._cursor)

    def _follow_stream(self) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        params = None
        if self._cursor is not None and self._resume_with_query:
            params = {"cursor": self._cursor}  # straight after the snapshot
        elif self._cursor is not None:
            headers["Last-Event-ID"] = self._cursor  # resume after the last applied event
        response = self._get(f"{self.url}/stream", headers=headers, params=params, stream=True,
                             timeout=(10, self.read_timeout))
        with response:
            if response.status_code in (400, 404, 409, 410, 412, 422):
                raise CursorRejected(f"{response.status_code} {response.text[:200]}")
            response.raise_for_status()
            self._resume_with_query = False
            self._backoff = 0.2
            self._mark_heard()
            self._connected = True
            parser = SseParser(self._cursor)
            while not self._stop.is_set():
                chunk = response.raw.read1(65536)  # returns as soon as any bytes arrive
                if not chunk:
                    raise ConnectionError("the stream ended")
                self._mark_heard()
                for event_id, event_type, data in parser.feed(chunk):
                    if data is not None and event_type == "message":
                        self.revocations.add(json.loads(data))
                    if event_id is not None:
                        self._cursor = event_id  # only once the event is applied

    def _mark_heard(self) -> None:
        self._last_heard = time.monotonic()
