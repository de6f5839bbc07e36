// Unit tests of the revocation logic and SSE parsing (no server needed): node --test
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RevocationSet, SseParser } from '../revocations.mjs';

test('each kind of entry refuses what it covers', () => {
  const revocations = new RevocationSet();
  revocations.add({ kind: 'token', jti: 'j1', expires_at: 2e9 });
  revocations.add({ kind: 'session', sid: 's1', expires_at: 2e9 });
  revocations.add({ kind: 'user', sub: 'u1', before: 1000.999, expires_at: 2e9, except_jti: 'keep' });
  const token = { jti: 'x', sid: 's0', sub: 'u0', iat: 900 };
  assert.equal(revocations.isRevoked(token), false);
  assert.equal(revocations.isRevoked({ ...token, jti: 'j1' }), true);
  assert.equal(revocations.isRevoked({ ...token, sid: 's1' }), true);
  assert.equal(revocations.isRevoked({ ...token, sub: 'u1', iat: 999 }), true);
  assert.equal(revocations.isRevoked({ ...token, sub: 'u1', iat: 1000 }), true);
  assert.equal(revocations.isRevoked({ ...token, sub: 'u1', iat: 1001 }), false);
  assert.equal(revocations.isRevoked({ ...token, sub: 'u1', iat: 1000, jti: 'keep' }), false);
  revocations.add({ kind: 'user', sub: 'u1', before: 2000.0, expires_at: 2e9 });
  assert.equal(revocations.isRevoked({ ...token, sub: 'u1', iat: 1000, jti: 'keep' }), true);
  assert.equal(revocations.isRevoked({ jti: 'x', sub: 'u0', iat: 900 }), false);
});

test('expired entries are pruned', () => {
  const revocations = new RevocationSet();
  revocations.add({ kind: 'token', jti: 'old', expires_at: 100 });
  revocations.add({ kind: 'token', jti: 'new', expires_at: '2100-01-01T00:00:00.000Z' });
  revocations.add({ kind: 'user', sub: 'u', before: 50, expires_at: 100.5 });
  revocations.prune(101);
  assert.equal(revocations.size, 1);
  assert.equal(revocations.isRevoked({ jti: 'new' }), true);
  assert.equal(revocations.isRevoked({ jti: 'old', sub: 'u', iat: 10 }), false);
});

test('the SSE parser handles any split and line ending', () => {
  const stream = ': heartbeat\r\n\r\nid: 1\r\ndata: {"a":1}\r\n\r\n'
    + 'id: 2\ndata: line1\ndata: line2\n\n'
    + ': another heartbeat\rid: 3\rdata:{"b":2}\r\r'
    + 'event: other\nid: 4\ndata: x\n\nid: 5\n\n';
  const expected = [
    { id: '1', type: 'message', data: '{"a":1}' },
    { id: '2', type: 'message', data: 'line1\nline2' },
    { id: '3', type: 'message', data: '{"b":2}' },
    { id: '4', type: 'other', data: 'x' },
    { id: '5', type: 'message', data: undefined },
  ];
  for (const size of [1, 2, 3, 7, stream.length]) {
    const parser = new SseParser('0');
    const events = [];
    for (let i = 0; i < stream.length; i += size) events.push(...parser.feed(stream.slice(i, i + size)));
    assert.deepEqual(events, expected, `chunks of ${size}`);
    assert.equal(parser.lastEventId, '5');
  }
});

test('the SSE parser keeps the id until an event is complete', () => {
  const parser = new SseParser('10');
  assert.deepEqual(parser.feed('id: 11\ndata: {}\n'), []);
  assert.equal(parser.lastEventId, '10');
  assert.deepEqual(parser.feed('\n'), [{ id: '11', type: 'message', data: '{}' }]);
});
