"""Unit tests of the examples' revocation logic and SSE parsing (no server needed)."""

from __future__ import annotations

import subprocess
import sys

from conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES / "flask"))

from revocations import RevocationSet, SseParser  # noqa: E402


def test_each_kind_of_entry_refuses_what_it_covers():
    revocations = RevocationSet()
    revocations.add({"kind": "token", "jti": "j1", "expires_at": 2e9})
    revocations.add({"kind": "session", "sid": "s1", "expires_at": 2e9})
    revocations.add({"kind": "user", "sub": "u1", "before": 1000.999, "expires_at": 2e9,
                     "except_jti": "keep"})
    token = {"jti": "x", "sid": "s0", "sub": "u0", "iat": 900}
    assert not revocations.is_revoked(token)
    assert revocations.is_revoked({**token, "jti": "j1"})
    assert revocations.is_revoked({**token, "sid": "s1"})
    # user cut-off: iat at or before floor(before), except the one kept jti
    assert revocations.is_revoked({**token, "sub": "u1", "iat": 999})
    assert revocations.is_revoked({**token, "sub": "u1", "iat": 1000})
    assert not revocations.is_revoked({**token, "sub": "u1", "iat": 1001})
    assert not revocations.is_revoked({**token, "sub": "u1", "iat": 1000, "jti": "keep"})
    # a later cut-off without an exception covers the kept token too
    revocations.add({"kind": "user", "sub": "u1", "before": 2000.0, "expires_at": 2e9})
    assert revocations.is_revoked({**token, "sub": "u1", "iat": 1000, "jti": "keep"})
    # no sid claim: only the other rules apply
    assert not revocations.is_revoked({"jti": "x", "sub": "u0", "iat": 900})


def test_expired_entries_are_pruned():
    revocations = RevocationSet()
    revocations.add({"kind": "token", "jti": "old", "expires_at": 100})
    revocations.add({"kind": "token", "jti": "new", "expires_at": "2100-01-01T00:00:00.000Z"})
    revocations.add({"kind": "user", "sub": "u", "before": 50, "expires_at": 100.5})
    revocations.prune(now=101)
    assert len(revocations) == 1
    assert revocations.is_revoked({"jti": "new"})
    assert not revocations.is_revoked({"jti": "old", "sub": "u", "iat": 10})


def test_unknown_entries_are_ignored():
    revocations = RevocationSet()
    revocations.add({"kind": "mystery", "jti": "j"})
    assert len(revocations) == 0


def test_the_sse_parser_handles_any_split_and_line_ending():
    stream = (b": heartbeat\r\n\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\n"
              b"id: 2\ndata: line1\ndata: line2\n\n"
              b": another heartbeat\rid: 3\rdata:{\"b\":2}\r\r"
              b"event: other\nid: 4\ndata: x\n\nid: 5\n\n")
    expected = [("1", "message", '{"a":1}'), ("2", "message", "line1\nline2"),
                ("3", "message", '{"b":2}'), ("4", "other", "x"), ("5", "message", None)]
    for size in (1, 2, 3, 7, len(stream)):
        parser = SseParser("0")
        events = []
        for i in range(0, len(stream), size):
            events += parser.feed(stream[i:i + size])
        assert events == expected, size
        assert parser.last_event_id == "5"


def test_the_sse_parser_keeps_the_id_until_an_event_is_complete():
    parser = SseParser("10")
    assert parser.feed(b"id: 11\ndata: {}\n") == []
    assert parser.last_event_id == "10"  # the event is not dispatched: resume from 10
    assert parser.feed(b"\n") == [("11", "message", "{}")]


def test_the_node_examples_unit_tests_pass():
    result = subprocess.run(["node", "--test"], capture_output=True, text=True, timeout=120,
                            cwd=EXAMPLES / "node")
    assert result.returncode == 0, result.stdout + result.stderr
