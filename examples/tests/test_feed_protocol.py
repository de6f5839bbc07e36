"""The revocation feed's wire contract, as any other-language reader relies on it: snapshot,
SSE framing, heartbeats, and resuming with Last-Event-ID or ?cursor= without a gap."""

from __future__ import annotations

import json
import sys
import time

import pytest
import requests

from conftest import EXAMPLES, unverified

sys.path.insert(0, str(EXAMPLES / "flask"))

from revocations import SseParser  # noqa: E402


@pytest.fixture(scope="module")
def feed_token(auth) -> str:
    client = auth.create_client(["revocations:read"], name="examples-feed-protocol")
    response = requests.post(f"{auth.url}/oauth/token", timeout=10,
                             auth=(client["client_id"], client["client_secret"]),
                             data={"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def snapshot(auth, token: str) -> dict:
    response = requests.get(f"{auth.url}/revocations", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def read_stream(auth, token: str, *, headers: dict | None = None, params: dict | None = None,
                until, timeout: float = 5.0) -> tuple[list, bytes]:
    """Reads the stream until `until(events, raw)` is true; returns the events and raw bytes."""
    response = requests.get(f"{auth.url}/revocations/stream", stream=True, timeout=(5, timeout),
                            params=params, headers={"Authorization": f"Bearer {token}",
                                                    **(headers or {})})
    with response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        parser, events, raw = SseParser(), [], b""
        deadline = time.monotonic() + timeout
        while not until(events, raw):
            assert time.monotonic() < deadline, f"stream so far: {raw!r}"
            chunk = response.raw.read1(65536)
            assert chunk, f"the stream ended: {raw!r}"
            raw += chunk
            events += parser.feed(chunk)
    return events, raw


def logout(auth) -> str:
    """Logs a new session out; returns the revoked access token's jti."""
    access = auth.new_user().login()["access_token"]
    response = requests.post(f"{auth.url}/auth/logout", timeout=10,
                             headers={"Authorization": f"Bearer {access}"})
    assert response.status_code == 204, response.text
    return unverified(access)[1]["jti"]


def test_the_stream_is_sse_with_heartbeat_comments(auth, feed_token):
    arrivals: list[float] = []

    def a_later_comment(_events, raw):
        # Timestamps each comment line as it arrives; done at one that came 1.5 s after the start.
        while len(arrivals) < sum(line.startswith(b":") for line in raw.splitlines()):
            arrivals.append(time.monotonic() - opened)
        return bool(arrivals) and arrivals[-1] >= 1.5

    # From the current cursor, so that no backlog comes first: an idle stream.
    cursor = snapshot(auth, feed_token)["cursor"]
    opened = time.monotonic()
    _, raw = read_stream(auth, feed_token, headers={"Last-Event-ID": cursor}, timeout=16,
                         until=a_later_comment)
    assert raw.startswith(b":"), raw  # a comment at once
    assert arrivals[0] < 1.0, arrivals
    # Then comments keep coming while idle, at most 15 s apart.
    assert arrivals[-1] < 15.5 and all(b - a < 15 for a, b in zip(arrivals, arrivals[1:])), arrivals


def test_missed_events_are_replayed_after_last_event_id_or_cursor(auth, feed_token):
    cursor = snapshot(auth, feed_token)["cursor"]
    jtis = [logout(auth) for _ in range(3)]

    def three(events, _raw):
        return len(events) >= 3

    for resume in ({"headers": {"Last-Event-ID": cursor}}, {"params": {"cursor": cursor}}):
        events, raw = read_stream(auth, feed_token, until=three, **resume)
        assert [e[1] for e in events[:3]] == ["message"] * 3, raw  # no `event:` name
        assert b"\nevent:" not in raw and not raw.startswith(b"event:")
        entries = [json.loads(e[2]) for e in events[:3]]
        assert [(e["kind"], e["jti"]) for e in entries] == [("token", j) for j in jtis], raw
        assert all(isinstance(e["expires_at"], int) and e["expires_at"] > time.time()
                   for e in entries), entries
        ids = [e[0] for e in events[:3]]
        assert len(set(ids)) == 3 and all(ids), raw

    # From the second event's id: the third comes first, nothing before it.
    events, raw = read_stream(auth, feed_token, headers={"Last-Event-ID": ids[1]},
                              until=lambda events, _raw: len(events) >= 1)
    assert json.loads(events[0][2])["jti"] == jtis[2], raw
    assert events[0][0] == ids[2]


def test_the_snapshot_lists_each_kind(auth, feed_token):
    user = auth.new_user()
    first, second = user.login(), user.login()
    before = time.time()
    response = requests.post(f"{auth.url}/auth/logout-all", timeout=10,
                             headers={"Authorization": f"Bearer {first['access_token']}"})
    assert response.status_code == 204, response.text
    sub = unverified(second["access_token"])[1]["sub"]
    items = snapshot(auth, feed_token)["items"]
    cutoffs = [item for item in items if item["kind"] == "user" and item["sub"] == sub]
    assert len(cutoffs) == 1, items
    assert isinstance(cutoffs[0]["before"], (int, float)), cutoffs
    assert before - 2 <= cutoffs[0]["before"] <= time.time() + 1, cutoffs
    assert unverified(second["access_token"])[1]["iat"] <= cutoffs[0]["before"]


def test_a_cursor_it_did_not_issue_is_refused(auth, feed_token):
    response = requests.get(f"{auth.url}/revocations/stream", timeout=10,
                            headers={"Authorization": f"Bearer {feed_token}",
                                     "Last-Event-ID": "not-a-cursor"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"


def test_only_a_service_token_with_the_scope_reads_the_feed(auth):
    user_token = auth.new_user().login()["access_token"]
    client = auth.create_client(["books:read"], name="examples-no-feed")
    service_token = requests.post(f"{auth.url}/oauth/token", timeout=10,
                                  auth=(client["client_id"], client["client_secret"]),
                                  data={"grant_type": "client_credentials"}).json()["access_token"]
    for token in (user_token, service_token):
        for path in ("/revocations", "/revocations/stream"):
            response = requests.get(f"{auth.url}{path}", timeout=10,
                                    headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 403, response.text
    assert requests.get(f"{auth.url}/revocations", timeout=10).status_code == 401
