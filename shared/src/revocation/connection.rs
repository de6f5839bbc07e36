//! The one connection type every Redis user goes through (the revocation reader and replica,
//! auth-service's ledger, feed and throttle): one server (`redis://`), or the master of a Redis
//! Sentinel deployment (`redis+sentinel://`), followed across failovers.
//!
//! One server: the `redis` crate's `ConnectionManager`, as before Sentinel support — one
//! multiplexed connection that reconnects by itself, and no extra work per command.
//!
//! Sentinel: one multiplexed connection to the master, shared by every clone; a command costs
//! a mutex-guarded clone of its handle, no extra round trip. The connection is dropped when it
//! closes (the crate reports it), when a command fails in a way that says it is gone (an I/O
//! error, a timeout), or when the server answers that it is not the master (`READONLY`,
//! `MASTERDOWN`, `LOADING`: a demoted master). The next command then asks the sentinels in
//! turn for the master of the name (each bounded by [`SENTINEL_TIMEOUT`]; the one that answered
//! is asked first next time), the `redis` crate checks with `ROLE` that the server named is a
//! master, and connects. Never reconnecting to an address without asking the sentinels means a
//! restarted old master (empty, or behind) is never used by mistake. One search runs at a
//! time; after a failed one the next waits a short back-off (50 ms doubling to
//! [`MAX_RETRY`]), and a command that arrives meanwhile waits for that next search (only that
//! one: if it fails too, so does the command), so commands neither pile up on a dead address
//! nor fail needlessly just after a failover.
//!
//! Failures are never hidden: a command that may have reached the server is never sent again,
//! its error goes to the caller (the services answer `503`). Only a command the server refused
//! unexecuted because it is not the master is sent once more, to the master found anew.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::FutureExt;
use redis::aio::{
    AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig,
    MultiplexedConnection, PubSub,
};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline,
    ProtocolVersion, PushInfo, PushKind, RedisConnectionInfo, RedisError, RedisFuture, RedisResult,
    Value,
};

use crate::redis_target::{RedisTarget, SentinelTarget};

/// A request must fail fast with 503, not hang, when Redis is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one sentinel (and the master it names, for `ROLE`) may take before the next sentinel
/// is asked.
pub const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest commands fail fast after a failed search before the next search. Short, because
/// it adds to what clients see of a failover.
pub const MAX_RETRY: Duration = Duration::from_millis(250);

/// A cloneable connection to the server, or under Sentinel to the current master. Implements
/// [`ConnectionLike`], so commands, pipelines and scripts run on it as on any `redis`
/// connection.
#[derive(Clone)]
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    /// One server: the `redis` crate's `ConnectionManager`, which reconnects by itself.
    Server {
        manager: ConnectionManager,
        client: Arc<Client>,
    },
    /// The master of a Sentinel deployment, found again after each failure.
    Sentinel(Arc<Followed>),
}

struct Followed {
    target: RedisTarget,
    db: i64,
    /// The connection commands use, and its generation (which search found it).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Taken by the one search running at a time.
    switch: tokio::sync::Mutex<Switch>,
}

struct Switch {
    target: SentinelTarget,
    /// One client per sentinel (so each can be given its own time limit), made on first use
    /// and dropped when it times out.
    sentinels: Vec<Option<SentinelClient>>,
    /// The sentinel that answered last: asked first.
    preferred: usize,
    /// The generation of the connection last found, and a client for its server.
    generation: u64,
    client: Option<Client>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl RedisConnection {
    /// Finds the server (the master, for Sentinel) and connects; fails when it cannot.
    pub async fn connect(target: &RedisTarget) -> RedisResult<Self> {
        match target {
            RedisTarget::Server(url) => {
                let client = Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    .set_number_of_retries(2)
                    .set_max_delay(500);
                let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(Self(Inner::Server {
                    manager,
                    client: Arc::new(client),
                }))
            }
            RedisTarget::Sentinel(sentinel) => {
                let followed = Arc::new(Followed {
                    target: target.clone(),
                    db: sentinel.db,
                    current: Mutex::new(None),
                    switch: tokio::sync::Mutex::new(Switch {
                        target: sentinel.clone(),
                        sentinels: (0..sentinel.sentinels.len()).map(|_| None).collect(),
                        preferred: 0,
                        generation: 0,
                        client: None,
                        failures: 0,
                        retry_at: None,
                        last_error: String::new(),
                    }),
                });
                followed.current().await?;
                Ok(Self(Inner::Sentinel(followed)))
            }
        }
    }

    /// A pub/sub connection to the server the commands go to now.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        let client = match &self.0 {
            Inner::Server { client, .. } => Client::clone(client),
            Inner::Sentinel(followed) => {
                followed.current().await?;
                let client = followed.switch.lock().await.client.clone();
                client.ok_or_else(|| {
                    RedisError::from((ErrorKind::IoError, "no Redis master found yet"))
                })?
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(pubsub) => pubsub,
            Err(_) => Err(RedisError::from((
                ErrorKind::IoError,
                "pub/sub connect timed out",
            ))),
        }
    }
}

impl Followed {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops connection `generation` (if it is still the current one): the next command finds
    /// the master again.
    fn forget(&self, generation: u64, why: &dyn std::fmt::Display) {
        let mut held = self.held();
        if held
            .as_ref()
            .is_some_and(|(current, _)| *current == generation)
        {
            *held = None;
            tracing::warn!(redis = %self.target, reason = %why, "Redis connection lost; asking the sentinels for the master");
        }
    }

    /// The connection to use now, finding the master first if there is none.
    async fn current(self: &Arc<Self>) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.held().clone() {
            return Ok(current);
        }
        let mut switch = self.switch.lock().await;
        // Another command may have found it while this one waited.
        if let Some(current) = self.held().clone() {
            return Ok(current);
        }
        // After a failed search, wait (without holding the lock) for the next one rather than
        // fail at once: a command arriving just after a failover then succeeds. If another
        // command searched in the meantime and failed, its error is this one's too: each
        // command waits for one search at most, so nothing queues up behind a dead server.
        if let Some(wait) = switch
            .retry_at
            .and_then(|at| at.checked_duration_since(Instant::now()))
        {
            let seen = switch.failures;
            drop(switch);
            tokio::time::sleep(wait).await;
            switch = self.switch.lock().await;
            if let Some(current) = self.held().clone() {
                return Ok(current);
            }
            if switch.failures != seen {
                return Err(RedisError::from((
                    ErrorKind::IoError,
                    "Redis master not found",
                    switch.last_error.clone(),
                )));
            }
        }
        // Told by the connection itself when it closes (the master died, or was demoted and
        // dropped its clients), so the next command asks the sentinels instead of failing once
        // on a dead connection.
        let generation = switch.generation + 1;
        let followed = Arc::downgrade(self);
        let on_close = move |push: PushInfo| {
            if push.kind == PushKind::Disconnection {
                if let Some(followed) = followed.upgrade() {
                    followed.forget(generation, &"the connection closed");
                }
            }
            Ok::<(), redis::aio::SendError>(())
        };
        // Boxed: the `redis` crate's sentinel futures are deep, and would make every future
        // that awaits a connection deeper than the compiler's limit.
        match Box::pin(switch.find(on_close)).await {
            Ok((client, connection)) => {
                if switch.failures > 0 || switch.generation > 0 {
                    tracing::info!(
                        redis = %self.target,
                        master = %client.get_connection_info().addr,
                        "Redis master found"
                    );
                }
                switch.generation = generation;
                switch.failures = 0;
                switch.retry_at = None;
                switch.client = Some(client);
                let current = (generation, connection);
                *self.held() = Some(current.clone());
                Ok(current)
            }
            Err(err) => {
                let backoff = FIRST_RETRY
                    .saturating_mul(1 << switch.failures.min(8))
                    .min(MAX_RETRY);
                switch.failures += 1;
                switch.retry_at = Some(Instant::now() + backoff);
                switch.last_error = err.to_string();
                if switch.failures == 1 {
                    tracing::warn!(redis = %self.target, error = %err, "Redis master not found; asking again");
                }
                Err(err)
            }
        }
    }

    async fn command(self: &Arc<Self>, cmd: &Cmd) -> RedisResult<Value> {
        let mut resent = false;
        loop {
            let (generation, mut connection) = self.current().await?;
            let result = connection.send_packed_command(cmd).await;
            match verdict(&result, refused_as_replica) {
                Verdict::Done => return result,
                Verdict::Broken(err) => {
                    self.forget(generation, &err);
                    return result;
                }
                Verdict::NotMaster => {
                    self.forget(generation, &"the server is not the master");
                    if resent {
                        return result;
                    }
                    resent = true;
                }
            }
        }
    }

    async fn commands(
        self: &Arc<Self>,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let mut resent = false;
        loop {
            let (generation, mut connection) = self.current().await?;
            let result = connection
                .send_packed_commands(pipeline, offset, count)
                .await;
            match verdict(&result, |values| values.iter().any(refused_as_replica)) {
                Verdict::Done => return result,
                Verdict::Broken(err) => {
                    self.forget(generation, &err);
                    return result;
                }
                Verdict::NotMaster => {
                    self.forget(generation, &"the server is not the master");
                    if resent {
                        return result;
                    }
                    resent = true;
                }
            }
        }
    }
}

enum Verdict {
    /// An answer (possibly an error) from the master.
    Done,
    /// The connection failed; the command may or may not have run.
    Broken(String),
    /// The server refused without running it: it is not (or not yet) the master.
    NotMaster,
}

fn verdict<T>(result: &RedisResult<T>, refused: impl Fn(&T) -> bool) -> Verdict {
    match result {
        Ok(value) if refused(value) => Verdict::NotMaster,
        Ok(_) => Verdict::Done,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::BusyLoadingError
            ) =>
        {
            Verdict::NotMaster
        }
        Err(err)
            if err.is_io_error()
                || err.is_timeout()
                || err.is_connection_dropped()
                || err.is_unrecoverable_error() =>
        {
            Verdict::Broken(err.to_string())
        }
        Err(_) => Verdict::Done,
    }
}

/// A reply by which a replica (or a server still loading) refuses a command it did not run.
fn refused_as_replica(value: &Value) -> bool {
    matches!(value, Value::ServerError(err) if matches!(err.code(), "READONLY" | "MASTERDOWN" | "LOADING"))
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Server { manager, .. } => manager.req_packed_command(cmd),
            Inner::Sentinel(followed) => async move { followed.command(cmd).await }.boxed(),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Server { manager, .. } => manager.req_packed_commands(cmd, offset, count),
            Inner::Sentinel(followed) => {
                async move { followed.commands(cmd, offset, count).await }.boxed()
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Server { manager, .. } => manager.get_db(),
            Inner::Sentinel(followed) => followed.db,
        }
    }
}

impl Switch {
    /// The master now and a connection to it; `on_close` hears when it closes.
    async fn find(
        &mut self,
        on_close: impl AsyncPushSender,
    ) -> RedisResult<(Client, MultiplexedConnection)> {
        let client = master(&self.target, &mut self.sentinels, &mut self.preferred).await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_push_sender(on_close);
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok((client, connection))
    }
}

/// Asks each sentinel in turn, the last one that answered first, for the master of the name;
/// the `redis` crate checks with `ROLE` that the server named is a master.
async fn master(
    target: &SentinelTarget,
    sentinels: &mut [Option<SentinelClient>],
    preferred: &mut usize,
) -> RedisResult<Client> {
    let mut last_error = None;
    for step in 0..sentinels.len() {
        let index = (*preferred + step) % sentinels.len();
        let slot = &mut sentinels[index];
        if slot.is_none() {
            *slot = Some(sentinel_client(target, index)?);
        }
        let Some(sentinel) = slot.as_mut() else {
            continue;
        };
        match tokio::time::timeout(SENTINEL_TIMEOUT, sentinel.async_get_client()).await {
            Ok(Ok(client)) => {
                *preferred = index;
                return Ok(client);
            }
            Ok(Err(err)) => last_error = Some(err),
            Err(_) => {
                // Its cached connection may be stuck: start afresh next time.
                *slot = None;
                let (host, port) = &target.sentinels[index];
                last_error = Some(RedisError::from((
                    ErrorKind::IoError,
                    "sentinel timed out",
                    format!("{host}:{port}"),
                )));
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| RedisError::from((ErrorKind::EmptySentinelList, "no sentinel"))))
}

fn sentinel_client(target: &SentinelTarget, index: usize) -> RedisResult<SentinelClient> {
    let (host, port) = target.sentinels[index].clone();
    let credentials = |db, protocol| RedisConnectionInfo {
        db,
        username: target.username.clone(),
        password: target.password.clone(),
        protocol,
    };
    let sentinel = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: credentials(0, ProtocolVersion::RESP2),
    };
    SentinelClient::build(
        vec![sentinel],
        target.master.clone(),
        Some(SentinelNodeConnectionInfo {
            tls_mode: None,
            // RESP3 to the servers: only with it does the `redis` crate tell a connection's
            // owner that it closed (`PushKind::Disconnection`). Redis 6 or later.
            redis_connection_info: Some(credentials(target.db, ProtocolVersion::RESP3)),
        }),
        SentinelServerType::Master,
    )
}

/// A [`RedisConnection`] of each actix worker's own for the request path's commands. A
/// connection's I/O is driven by the runtime it was made on: the shared one, made at start on
/// the main runtime, answers every command by waking a main-runtime thread, which then wakes the
/// worker that sent it. On an actix worker (a current-thread runtime) each worker connects once
/// and keeps the connection for that thread, so a round trip wakes only the worker itself;
/// elsewhere (the main runtime, tests) the shared connection is used.
pub struct WorkerConnections {
    id: u64,
    target: RedisTarget,
    shared: RedisConnection,
}

impl WorkerConnections {
    /// Per-worker connections to `target`; `shared` serves every other thread.
    pub fn new(target: &RedisTarget, shared: RedisConnection) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        WorkerConnections {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            target: target.clone(),
            shared,
        }
    }

    /// This thread's connection (made now if it has none).
    pub async fn get(&self) -> RedisResult<RedisConnection> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        thread_local! {
            static HELD: std::cell::RefCell<std::collections::HashMap<u64, RedisConnection>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        if Handle::current().runtime_flavor() != RuntimeFlavor::CurrentThread {
            return Ok(self.shared.clone());
        }
        if let Some(held) = HELD.with_borrow(|held| held.get(&self.id).cloned()) {
            return Ok(held);
        }
        let connection = RedisConnection::connect(&self.target).await?;
        HELD.with_borrow_mut(|held| held.insert(self.id, connection.clone()));
        Ok(connection)
    }

    /// The connection every thread shares.
    pub fn shared(&self) -> &RedisConnection {
        &self.shared
    }
}
