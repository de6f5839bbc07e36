// A local replica of auth-service's revocation list, fed by its revocation stream.
//
// The feed obtains a service token (client_credentials, scope `revocations:read`), loads the
// snapshot (`GET /revocations`), then follows `GET /revocations/stream` from the snapshot's
// cursor, reconnecting with `Last-Event-ID` so that no revocation is missed.
//
// `isRevoked(claims)` answers from memory. It throws RevocationsUnavailable (fail closed) until
// the snapshot is loaded, when the stream has been silent for `readTimeoutMs` (the server sends
// a heartbeat at least every 15 s), and when it has been down for longer than `reconnectGraceMs`.

export class RevocationsUnavailable extends Error {}
class CursorRejected extends Error {}

/** Unix seconds from a number or an RFC 3339 string; undefined when absent or unreadable. */
function timestamp(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms / 1000;
  }
  return undefined;
}

/** The revocation entries and the rules that apply them to a token's claims. */
export class RevocationSet {
  #jtis = new Map(); // jti -> expires_at
  #sids = new Map(); // sid -> expires_at
  #users = new Map(); // sub -> [{ before, exceptJti, expiresAt }]

  clear() {
    this.#jtis.clear();
    this.#sids.clear();
    this.#users.clear();
  }

  add(entry) {
    const expiresAt = timestamp(entry?.expires_at);
    if (entry?.kind === 'token' && typeof entry.jti === 'string') {
      this.#jtis.set(entry.jti, expiresAt);
    } else if (entry?.kind === 'session' && typeof entry.sid === 'string') {
      this.#sids.set(entry.sid, expiresAt);
    } else if (entry?.kind === 'user' && typeof entry.sub === 'string') {
      // Fail closed: without a readable `before`, every token of this user so far.
      const before = timestamp(entry.before) ?? Infinity;
      const cutoffs = this.#users.get(entry.sub) ?? [];
      cutoffs.push({ before, exceptJti: entry.except_jti ?? undefined, expiresAt });
      this.#users.set(entry.sub, cutoffs);
    } else {
      console.warn('ignoring unknown revocation entry', entry);
    }
  }

  isRevoked({ jti, sid, sub, iat }) {
    if (jti !== undefined && this.#jtis.has(jti)) return true;
    if (sid !== undefined && this.#sids.has(sid)) return true;
    for (const { before, exceptJti } of this.#users.get(sub) ?? []) {
      if (exceptJti !== undefined && jti === exceptJti) continue;
      // `iat` is whole seconds: a token issued in the cut-off's second is refused.
      if (typeof iat !== 'number' || iat <= Math.floor(before)) return true;
    }
    return false;
  }

  /** Drops the entries whose `expires_at` has passed (no token they cover is still valid). */
  prune(now = Date.now() / 1000) {
    const live = (expiresAt) => expiresAt === undefined || expiresAt > now;
    for (const map of [this.#jtis, this.#sids]) {
      for (const [key, expiresAt] of map) if (!live(expiresAt)) map.delete(key);
    }
    for (const [sub, cutoffs] of this.#users) {
      const kept = cutoffs.filter((c) => live(c.expiresAt));
      if (kept.length) this.#users.set(sub, kept);
      else this.#users.delete(sub);
    }
  }

  get size() {
    let n = this.#jtis.size + this.#sids.size;
    for (const cutoffs of this.#users.values()) n += cutoffs.length;
    return n;
  }
}

/**
 * Incremental text/event-stream parser (the WHATWG rules that matter here). `feed(text)` returns
 * the dispatched events as { id, type, data }; `data` is undefined for an event that only moved
 * the id. Comments (heartbeats) produce nothing.
 */
export class SseParser {
  #buffer = '';
  #data = [];
  #type = '';
  #idBuffer;

  constructor(lastEventId) {
    this.#idBuffer = lastEventId;
    this.lastEventId = lastEventId;
  }

  feed(text) {
    this.#buffer += text;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      if (!match) return events;
      // A CR at the very end may be the first half of a CRLF: wait for more.
      if (match[0] === '\r' && match.index === this.#buffer.length - 1) return events;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      const event = this.#line(line);
      if (event) events.push(event);
    }
  }

  #line(line) {
    if (line === '') {
      const data = this.#data;
      const type = this.#type || 'message';
      this.#data = [];
      this.#type = '';
      const moved = this.#idBuffer !== this.lastEventId;
      this.lastEventId = this.#idBuffer;
      if (data.length === 0) return moved ? { id: this.lastEventId, type, data: undefined } : null;
      return { id: this.lastEventId, type, data: data.join('\n') };
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') this.#data.push(value);
    else if (name === 'event') this.#type = value;
    else if (name === 'id' && !value.includes('\0')) this.#idBuffer = value;
    return null;
  }
}

/** A client_credentials access token, renewed shortly before it expires. */
class ServiceToken {
  #token;
  #renewAt = 0;

  constructor(tokenEndpoint, clientId, clientSecret, scope) {
    this.tokenEndpoint = tokenEndpoint;
    // RFC 6749 section 2.3.1: form-encoded before they go into the Basic header.
    this.basic = Buffer.from(
      `${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`,
    ).toString('base64');
    this.scope = scope;
  }

  async get() {
    if (this.#token === undefined || Date.now() >= this.#renewAt) {
      const response = await fetch(this.tokenEndpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${this.basic}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: this.scope }),
        signal: AbortSignal.timeout(10_000),
      });
      if (!response.ok) throw new Error(`token endpoint: ${response.status} ${await response.text()}`);
      const body = await response.json();
      const lifetime = Number(body.expires_in ?? 60);
      this.#token = body.access_token;
      this.#renewAt = Date.now() + 1000 * Math.max(lifetime * 0.8, lifetime - 60);
    }
    return this.#token;
  }

  invalidate() {
    this.#token = undefined;
  }
}

/** Keeps a RevocationSet in step with auth-service's revocation stream. */
export class RevocationFeed {
  revocations = new RevocationSet();
  #cursor;
  #needSnapshot = true;
  #resumeWithQuery = false;
  #synced = false;
  #connected = false;
  #lastHeard = 0;
  #backoffMs = 200;
  #stopped = false;
  #abort;

  constructor({ revocationsUrl, tokenEndpoint, clientId, clientSecret,
    readTimeoutMs = 40_000, reconnectGraceMs = 5_000 }) {
    this.url = revocationsUrl.replace(/\/+$/, '');
    this.token = new ServiceToken(tokenEndpoint, clientId, clientSecret, 'revocations:read');
    this.readTimeoutMs = readTimeoutMs;
    this.reconnectGraceMs = reconnectGraceMs;
  }

  start() {
    this.#run();
    return this;
  }

  stop() {
    this.#stopped = true;
    this.#abort?.abort();
  }

  /** Synced, and either streaming or disconnected for less than `reconnectGraceMs`. */
  ready() {
    if (!this.#synced) return false;
    const silent = performance.now() - this.#lastHeard;
    return silent < (this.#connected ? this.readTimeoutMs : this.reconnectGraceMs);
  }

  isRevoked(claims) {
    if (!this.ready()) throw new RevocationsUnavailable('the revocation list is not up to date');
    return this.revocations.isRevoked(claims);
  }

  async #run() {
    let lastPrune = performance.now();
    while (!this.#stopped) {
      try {
        if (this.#needSnapshot) await this.#loadSnapshot();
        await this.#followStream();
      } catch (error) {
        if (error instanceof CursorRejected) {
          console.warn(`cursor ${this.#cursor} refused (${error.message}); reloading the snapshot`);
          this.#needSnapshot = true;
          continue;
        }
        if (!this.#stopped) console.warn(`revocation stream: ${error.message}; reconnecting`);
      } finally {
        if (this.#connected) {
          this.#connected = false;
          this.#markHeard(); // the grace runs from the moment the stream dropped
        }
      }
      if (performance.now() - lastPrune > 60_000) {
        this.revocations.prune();
        lastPrune = performance.now();
      }
      await new Promise((resolve) => setTimeout(resolve, this.#backoffMs * (0.5 + Math.random())));
      this.#backoffMs = Math.min(this.#backoffMs * 2, 5_000);
    }
  }

  async #get(url, headers, signal) {
    for (let attempt = 1; ; attempt += 1) {
      const response = await fetch(url, {
        headers: { ...headers, authorization: `Bearer ${await this.token.get()}` },
        signal,
      });
      if (response.status === 401 && attempt === 1) {
        await response.body?.cancel();
        this.token.invalidate(); // expired or revoked service token: get another
        continue;
      }
      return response;
    }
  }

  async #loadSnapshot() {
    const response = await this.#get(this.url, {}, AbortSignal.timeout(10_000));
    if (!response.ok) throw new Error(`snapshot: ${response.status} ${await response.text()}`);
    const body = await response.json();
    this.revocations.clear();
    for (const entry of body.items) this.revocations.add(entry);
    this.#cursor = body.cursor ?? undefined;
    this.#needSnapshot = false;
    this.#resumeWithQuery = true;
    this.#markHeard();
    this.#synced = true;
  }

  async #followStream() {
    const url = new URL(`${this.url}/stream`);
    const headers = { accept: 'text/event-stream', 'cache-control': 'no-cache' };
    if (this.#cursor !== undefined && this.#resumeWithQuery) {
      url.searchParams.set('cursor', this.#cursor); // straight after the snapshot
    } else if (this.#cursor !== undefined) {
      headers['last-event-id'] = this.#cursor; // resume after the last applied event
    }
    this.#abort = new AbortController();
    let watchdog = setTimeout(() => this.#abort.abort(new Error('read timeout')), 10_000);
    try {
      const response = await this.#get(url, headers, this.#abort.signal);
      if ([400, 404, 409, 410, 412, 422].includes(response.status)) {
        throw new CursorRejected(`${response.status} ${(await response.text()).slice(0, 200)}`);
      }
      if (!response.ok) throw new Error(`stream: ${response.status} ${await response.text()}`);
      this.#resumeWithQuery = false;
      this.#backoffMs = 200;
      this.#markHeard();
      this.#connected = true;
      const parser = new SseParser(this.#cursor);
      const decoder = new TextDecoder();
      const rearm = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => this.#abort.abort(new Error('read timeout')), this.readTimeoutMs);
      };
      rearm();
      for await (const chunk of response.body) {
        rearm();
        this.#markHeard();
        for (const { id, type, data } of parser.feed(decoder.decode(chunk, { stream: true }))) {
          if (data !== undefined && type === 'message') this.revocations.add(JSON.parse(data));
          if (id !== undefined) this.#cursor = id; // only once the event is applied
        }
      }
      throw new Error('the stream ended');
    } finally {
      clearTimeout(watchdog);
    }
  }

  #markHeard() {
    this.#lastHeard = performance.now();
  }
}
