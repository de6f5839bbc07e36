//! The ledger in Redis, shared by every instance: each operation is one Lua script (or one
//! `MULTI`), so no other instance's write can land between its check and its write.
//!
//! A write that ends sessions or tokens (a revocation, a cut-off, a session revoked on reuse) is
//! followed by `WAIT n timeout` when [`ReplicaWait`] asks for replicas (by default under Redis
//! Sentinel), in the same pipeline, so on the same connection (`WAIT` counts the replicas that
//! have what this connection wrote): the caller hears of success only once `n` replicas hold
//! the write, so a failover, which promotes a replica, cannot undo it. When fewer confirm in
//! time the write is still in effect on the master, and the answer says so
//! (`StoreUnavailable::NotReplicated`, a `503` whose message tells the client).

use futures_util::future::{BoxFuture, FutureExt};
use redis::{FromRedisValue, Script, ScriptInvocation};
use shared::revocation::{RedisConnection, RevocationKeys, StoreUnavailable, WorkerConnections};
use shared::{Claims, RedisTarget, RevocationEntry};

use super::{Lifetimes, Remembered, ReplicaWait, Rotation, RotationRequest, SessionLedger};

/// Merges a new cut-off into the user's entry (the rule of `shared::UserCutoff::merge`, which
/// the unit tests there check exhaustively), raised to the latest recorded issue, bumps the
/// user's generation, publishes the merged entry for the replicas and appends this one cut-off
/// (as raised, not merged: readers merge) to the revocation feed.
/// KEYS: user entry, user ledger, feed stream. ARGV: sub, before_ms, except_jti or "", the
/// entry's life past the second of its (raised) `before_ms` (`Lifetimes::cutoff_expiry`),
/// channel, ledger TTL, the published entry's life past that second, the feed's trim id.
const CUT_OFF: &str = r#"
local function norm(s, b, e)
  if e == '' then b = math.max(b, s) end
  if s >= b then b = s; e = '' end
  if e == '' then s = b end
  return s, b, e
end
local issued = tonumber(redis.call('HGET', KEYS[2], 'issued') or '0')
local before = math.max(tonumber(ARGV[2]), issued)
local strict = 0
if ARGV[3] == '' then strict = before end
local s, b, e = norm(strict, before, ARGV[3])
local expires = math.floor(b / 1000) + tonumber(ARGV[4])
local old = redis.call('GET', KEYS[1])
if old then
  local o = cjson.decode(old)
  local oe = o.except_jti
  if type(oe) ~= 'string' then oe = '' end
  local os, ob
  ob = tonumber(o.before_ms)
  os = tonumber(o.strict_before_ms or 0)
  os, ob, oe = norm(os, ob, oe)
  local ms = math.max(s, os)
  if e == oe then
    s, b, e = norm(ms, math.max(b, ob), e)
  elseif b <= ob then
    s, b, e = norm(math.max(ms, b), ob, oe)
  else
    s, b, e = norm(math.max(ms, ob), b, e)
  end
  expires = math.max(expires, tonumber(o.expires_at))
end
local json = '{"kind":"user_before","sub":' .. cjson.encode(ARGV[1]) ..
  ',"before_ms":' .. string.format('%.0f', b)
if e ~= '' then
  json = json .. ',"except_jti":' .. cjson.encode(e)
  if s ~= 0 then json = json .. ',"strict_before_ms":' .. string.format('%.0f', s) end
end
local verifier = math.floor(b / 1000) + tonumber(ARGV[7])
if old then
  local o = cjson.decode(old)
  if tonumber(o.verifier_expires_at) then verifier = math.max(verifier, tonumber(o.verifier_expires_at)) end
end
json = json .. ',"expires_at":' .. string.format('%.0f', expires) ..
  ',"verifier_expires_at":' .. string.format('%.0f', verifier) .. '}'
redis.call('SET', KEYS[1], json, 'EXAT', string.format('%.0f', expires))
redis.call('HINCRBY', KEYS[2], 'gen', 1)
local cut = tonumber(redis.call('HGET', KEYS[2], 'cut') or '0')
if before > cut then redis.call('HSET', KEYS[2], 'cut', string.format('%.0f', before)) end
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[5], json)
local published = '{"kind":"user","sub":' .. cjson.encode(ARGV[1]) ..
  ',"before":' .. string.format('%.3f', before / 1000)
if ARGV[3] ~= '' then published = published .. ',"except_jti":' .. cjson.encode(ARGV[3]) end
published = published .. ',"expires_at":' ..
  string.format('%.0f', math.floor(before / 1000) + tonumber(ARGV[7])) .. '}'
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[8], '*', 'r', published)
return json
"#;

/// Records an issue if the generation is unchanged and the pair is younger than the latest
/// cut-off. KEYS: user ledger. ARGV: generation, issued_ms, ledger TTL. Returns 1 when recorded,
/// 0 when a cut-off came in between or the pair would be born dead (issued in the cut-off's
/// millisecond).
const RECORD_ISSUE: &str = r#"
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen ~= tonumber(ARGV[1]) then return 0 end
if tonumber(ARGV[2]) <= tonumber(redis.call('HGET', KEYS[1], 'cut') or '0') then return 0 end
local issued = tonumber(redis.call('HGET', KEYS[1], 'issued') or '0')
if tonumber(ARGV[2]) > issued then redis.call('HSET', KEYS[1], 'issued', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Checks, spends and remembers a refresh token in one step.
/// KEYS: the session's chain record, grace answer, token entry, session entry, user entry, user
/// ledger, feed, the token's spent marker of releases before the chain record.
/// ARGV: jti, its issued_ms, the chain record's expires_at, client, remembered answer, grace ms,
/// new issued_ms, session entry JSON, session entry expires_at, channel, ledger TTL, the
/// session entry as published, the feed's trim id, the replacement refresh token's jti.
///
/// The token is current when the chain record names it, or when there is no record and no
/// marker (a session's first rotation: see the module `ledger`). The marker check reads what
/// earlier releases wrote, so a token they spent stays spent after an upgrade.
const ROTATE: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
  return {'revoked'}
end
local cut = redis.call('GET', KEYS[5])
if cut then
  local c = cjson.decode(cut)
  local issued = tonumber(ARGV[2])
  local before = tonumber(c.before_ms)
  local except = c.except_jti
  local strict = tonumber(c.strict_before_ms or 0)
  if type(except) ~= 'string' then except = ''; strict = before end
  if issued <= strict or (issued <= before and except ~= ARGV[1]) then return {'revoked'} end
end
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or (not current and redis.call('EXISTS', KEYS[8]) == 0) then
  redis.call('SET', KEYS[1], ARGV[14], 'EXAT', ARGV[3])
  if tonumber(ARGV[6]) > 0 then
    redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
  end
  local issued = tonumber(redis.call('HGET', KEYS[6], 'issued') or '0')
  if tonumber(ARGV[7]) > issued then redis.call('HSET', KEYS[6], 'issued', ARGV[7]) end
  redis.call('EXPIRE', KEYS[6], ARGV[11])
  return {'fresh'}
end
local answer = redis.call('GET', KEYS[2])
if answer then
  local ok, r = pcall(cjson.decode, answer)
  if ok and r.client == ARGV[4] then return {'replay', answer} end
end
redis.call('DEL', KEYS[2])
if ARGV[8] ~= '' then
  redis.call('SET', KEYS[4], ARGV[8], 'EXAT', ARGV[9])
  redis.call('PUBLISH', ARGV[10], ARGV[8])
  redis.call('XADD', KEYS[7], 'MINID', '~', ARGV[13], '*', 'r', ARGV[12])
end
return {'reused'}
"#;

/// Connections kept for writes confirmed with `WAIT`, when replicas must confirm.
const CONFIRMING_CONNECTIONS: usize = 4;

pub struct RedisLedger {
    /// The shared connection, and each actix worker's own for the request path.
    workers: WorkerConnections,
    /// `WAIT` holds its connection until replicas answer (up to `REDIS_WAIT_TIMEOUT_MS` when
    /// none can, right after a failover): on the shared multiplexed connection every login,
    /// refresh and token check queued behind it and timed out (seen in the failover test).
    /// Confirmed writes therefore go round these instead.
    confirming: Vec<RedisConnection>,
    next_confirming: std::sync::atomic::AtomicUsize,
    keys: RevocationKeys,
    wait: ReplicaWait,
    /// The revocation feed's stream.
    feed: String,
    lifetimes: Lifetimes,
    cut_off: redis::Script,
    record_issue: redis::Script,
    rotate: redis::Script,
}

impl RedisLedger {
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        lifetimes: Lifetimes,
        wait: ReplicaWait,
    ) -> Result<Self, StoreUnavailable> {
        let connection = shared::revocation::connect_redis(target).await?;
        let mut confirming = Vec::new();
        if wait.replicas > 0 {
            for _ in 0..CONFIRMING_CONNECTIONS {
                confirming.push(shared::revocation::connect_redis(target).await?);
            }
        }
        Ok(Self {
            workers: WorkerConnections::new(target, connection),
            confirming,
            next_confirming: std::sync::atomic::AtomicUsize::new(0),
            keys: RevocationKeys::new(prefix),
            wait,
            feed: crate::feed::stream_key(prefix),
            lifetimes,
            cut_off: redis::Script::new(CUT_OFF),
            record_issue: redis::Script::new(RECORD_ISSUE),
            rotate: redis::Script::new(ROTATE),
        })
    }

    /// An entry as stored and published: with `verifier_expires_at`, when the last access
    /// token it matches expires (0: it can only match refresh tokens), so verifiers' replicas
    /// keep it only that long (`shared::revocation::RevocationReplica`).
    fn stored_json(&self, entry: &RevocationEntry, now: i64) -> Result<String, StoreUnavailable> {
        let unreadable = |e: serde_json::Error| StoreUnavailable::Other(e.to_string());
        let mut value = serde_json::to_value(entry).map_err(unreadable)?;
        let verifier = self
            .lifetimes
            .published(entry, now)
            .map_or(0, |published| published.expires_at());
        if let Some(object) = value.as_object_mut() {
            object.insert("verifier_expires_at".into(), verifier.into());
        }
        serde_json::to_string(&value).map_err(unreadable)
    }

    /// Feed entries older than this are expired: every one lives at most an access-token
    /// lifetime (plus leeway) past the moment it was made.
    fn feed_trim_id(&self) -> String {
        let span_ms = (self.lifetimes.published_cutoff_span() + 1) * 1000;
        let now_ms = chrono::Utc::now().timestamp_millis();
        format!("{}-0", (now_ms - span_ms).max(0))
    }

    /// The connection for the request path's commands (a refresh's rotation script, a login's
    /// generation and issue record): the worker's own (see [`WorkerConnections`]).
    async fn worker_connection(&self) -> Result<RedisConnection, StoreUnavailable> {
        Ok(self.workers.get().await?)
    }

    /// A connection for a write followed by `WAIT` (the write and its `WAIT` must share it).
    fn confirming(&self) -> RedisConnection {
        let n = self
            .next_confirming
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.confirming.get(n % self.confirming.len().max(1)) {
            Some(connection) => connection.clone(),
            None => self.workers.shared().clone(),
        }
    }

    /// Adds `WAIT` for the replicas [`ReplicaWait`] asks for to `pipe`, after its writes.
    fn wait_in(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.wait.replicas)
            .arg(self.wait.timeout_ms);
    }

    /// Whether `acked` replicas (`WAIT`'s answer) are enough.
    fn confirmed(&self, acked: i64) -> Result<(), StoreUnavailable> {
        if acked < i64::from(self.wait.replicas) {
            return Err(StoreUnavailable::NotReplicated {
                wanted: self.wait.replicas,
                acked: u32::try_from(acked).unwrap_or(0),
                timeout_ms: self.wait.timeout_ms,
            });
        }
        Ok(())
    }

    /// Runs a script that ends sessions or tokens and, when replicas must confirm it, `WAIT`
    /// after it in the same pipeline.
    async fn invoke_confirmed<T: FromRedisValue>(
        &self,
        script: &Script,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreUnavailable> {
        if self.wait.replicas == 0 {
            let mut connection = self.workers.shared().clone();
            return Ok(invocation.invoke_async(&mut connection).await?);
        }
        let mut connection = self.confirming();
        let mut pipe = redis::pipe();
        pipe.invoke_script(invocation);
        self.wait_in(&mut pipe);
        let (reply, acked): (T, i64) = match pipe.query_async(&mut connection).await {
            Err(err) if err.kind() == redis::ErrorKind::NoScriptError => {
                // A new master (after a failover or a restart) has no scripts yet.
                script.load_async(&mut connection).await?;
                pipe.query_async(&mut connection).await?
            }
            other => other?,
        };
        self.confirmed(acked)?;
        Ok(reply)
    }

    async fn rotate_once(
        &self,
        request: RotationRequest<'_>,
    ) -> Result<Rotation, StoreUnavailable> {
        let presented = request.presented;
        let now = shared::now_unix();
        let (session_json, session_expires, session_published) = match &presented.sid {
            Some(sid) => {
                let entry = self.lifetimes.session_entry(sid, now);
                let json = self.stored_json(&entry, now)?;
                let published = match self.lifetimes.published(&entry, now) {
                    Some(published) => encode(&published)?,
                    None => String::new(),
                };
                (json, entry.expires_at, published)
            }
            None => (String::new(), 0, String::new()),
        };
        let sid = presented.sid.as_deref().unwrap_or_default();
        let replacement = &request.replacement.refresh;
        let answer = Remembered::encode(request.client, &request.replacement.body)?;
        let mut connection = self.worker_connection().await?;
        let reply: Vec<String> = self
            .rotate
            .key(self.keys.chain(&super::chain_of(presented)))
            .key(self.keys.rotation(&presented.jti))
            .key(self.keys.token(&presented.jti))
            .key(self.keys.session(sid))
            .key(self.keys.user(&presented.sub))
            .key(self.keys.user_ledger(&presented.sub))
            .key(&self.feed)
            .key(self.keys.spent(&presented.jti))
            .arg(&presented.jti)
            .arg(presented.issued_at_ms())
            .arg(shared::entry_expiry(replacement.exp, self.lifetimes.leeway))
            .arg(request.client)
            .arg(answer)
            .arg(self.lifetimes.grace.as_millis() as u64)
            .arg(request.replacement.issued_ms())
            .arg(&session_json)
            .arg(session_expires)
            .arg(self.keys.channel())
            .arg(self.lifetimes.ledger_ttl_secs())
            .arg(session_published)
            .arg(self.feed_trim_id())
            .arg(&replacement.jti)
            .invoke_async(&mut connection)
            .await?;
        match reply.first().map(String::as_str) {
            Some("fresh") => Ok(Rotation::Fresh),
            Some("revoked") => Ok(Rotation::Revoked),
            Some("reused") => {
                // The session was revoked: that must reach a replica like any other revocation.
                // Written again (the same value) and waited for in one pipeline, so the `WAIT`
                // counts replicas of a write on its own connection.
                if self.wait.replicas > 0 && !session_json.is_empty() {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET")
                        .arg(self.keys.session(sid))
                        .arg(&session_json)
                        .arg("EXAT")
                        .arg(session_expires)
                        .ignore();
                    self.wait_in(&mut pipe);
                    let (acked,): (i64,) = pipe.query_async(&mut self.confirming()).await?;
                    self.confirmed(acked)?;
                }
                Ok(Rotation::Reused)
            }
            Some("replay") => {
                let stored = reply.get(1).map(String::as_str).unwrap_or_default();
                Ok(Rotation::Replay(Remembered::decode(stored)?.pair))
            }
            other => Err(StoreUnavailable::Other(format!(
                "unexpected rotation reply {other:?}"
            ))),
        }
    }
}

fn encode(published: &shared::revocation::Published) -> Result<String, StoreUnavailable> {
    serde_json::to_string(published).map_err(|e| StoreUnavailable::Other(e.to_string()))
}

impl SessionLedger for RedisLedger {
    fn revoke(&self, entries: Vec<RevocationEntry>) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        async move {
            let now = shared::now_unix();
            let live: Vec<_> = entries.iter().filter(|entry| entry.is_live(now)).collect();
            if live.is_empty() {
                return Ok(());
            }
            let confirm = self.wait.replicas > 0;
            let mut pipe = redis::pipe();
            // One MULTI: every entry is stored and announced, or none is. With replicas to wait
            // for, MULTI and EXEC are spelt out, so that `WAIT` follows in the same pipeline
            // (inside a transaction it could not block).
            if confirm {
                pipe.cmd("MULTI").ignore();
            } else {
                pipe.atomic();
            }
            for entry in live {
                let json = self.stored_json(entry, now)?;
                pipe.cmd("SET")
                    .arg(self.keys.entry(&entry.target))
                    .arg(&json)
                    .arg("EXAT")
                    .arg(entry.expires_at)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(self.keys.channel())
                    .arg(&json)
                    .ignore();
                if let Some(published) = self.lifetimes.published(entry, now) {
                    pipe.cmd("XADD")
                        .arg(&self.feed)
                        .arg("MINID")
                        .arg("~")
                        .arg(self.feed_trim_id())
                        .arg("*")
                        .arg(crate::feed::FIELD)
                        .arg(encode(&published)?)
                        .ignore();
                }
            }
            if !confirm {
                pipe.query_async::<()>(&mut self.workers.shared().clone())
                    .await?;
                return Ok(());
            }
            pipe.cmd("EXEC").ignore();
            self.wait_in(&mut pipe);
            let (acked,): (i64,) = pipe.query_async(&mut self.confirming()).await?;
            self.confirmed(acked)
        }
        .boxed()
    }

    fn cut_off<'a>(
        &'a self,
        sub: &'a str,
        before_ms: i64,
        except_jti: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        async move {
            let mut invocation = self.cut_off.prepare_invoke();
            invocation
                .key(self.keys.user(sub))
                .key(self.keys.user_ledger(sub))
                .key(&self.feed)
                .arg(sub)
                .arg(before_ms)
                .arg(except_jti.unwrap_or_default())
                .arg(self.lifetimes.cutoff_expiry(0))
                .arg(self.keys.channel())
                .arg(self.lifetimes.ledger_ttl_secs())
                .arg(self.lifetimes.published_cutoff_span())
                .arg(self.feed_trim_id());
            let _: String = self.invoke_confirmed(&self.cut_off, &invocation).await?;
            Ok(())
        }
        .boxed()
    }

    fn generation<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        async move {
            let mut connection = self.worker_connection().await?;
            let generation: Option<u64> = redis::cmd("HGET")
                .arg(self.keys.user_ledger(sub))
                .arg("gen")
                .query_async(&mut connection)
                .await?;
            Ok(generation.unwrap_or(0))
        }
        .boxed()
    }

    fn record_issue<'a>(
        &'a self,
        sub: &'a str,
        generation: u64,
        issued_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        async move {
            let mut connection = self.worker_connection().await?;
            let recorded: i64 = self
                .record_issue
                .key(self.keys.user_ledger(sub))
                .arg(generation)
                .arg(issued_ms)
                .arg(self.lifetimes.ledger_ttl_secs())
                .invoke_async(&mut connection)
                .await?;
            Ok(recorded == 1)
        }
        .boxed()
    }

    fn is_spent<'a>(&'a self, token: &'a Claims) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        async move {
            let mut connection = self.workers.shared().clone();
            let (current, marked): (Option<String>, bool) = redis::pipe()
                .cmd("GET")
                .arg(self.keys.chain(&super::chain_of(token)))
                .cmd("EXISTS")
                .arg(self.keys.spent(&token.jti))
                .query_async(&mut connection)
                .await?;
            Ok(match current {
                Some(current) => current != token.jti,
                None => marked,
            })
        }
        .boxed()
    }

    fn rotate<'a>(
        &'a self,
        request: RotationRequest<'a>,
    ) -> BoxFuture<'a, Result<Rotation, StoreUnavailable>> {
        self.rotate_once(request).boxed()
    }
}
