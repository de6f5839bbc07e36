//! `mixed-load`: the open-loop load generator of `deploy/bench/mixed.py` (issue 16's mixed
//! workload). Drives the gateway at a fixed request rate with 90 % `GET /books/{id}`, 6 %
//! `GET /books` (a page), 2 % `POST /auth/refresh`, 1 % `POST /auth/login` and 1 %
//! `POST /auth/logout`, then checks that every token a logout revoked is refused everywhere.
//!
//! Fixed rate, no coordinated omission: request `i` is due at `start + i / rate`, whatever
//! happened to the requests before it. A pacing thread hands each index to the connection tasks
//! when it is due; a request waits in that queue when every connection is busy, and its latency
//! is measured from the time it was due, not from when it was sent, so a stall shows up in the
//! percentiles instead of silently lowering the rate (what wrk and other closed-loop tools do).
//! Every 100 consecutive requests hold exactly that mix, in a seeded shuffled order.
//!
//! Sessions: `MIXED_SESSIONS` logins before the run fill a pool; GETs and pages use a random
//! session's current access token; a refresh rotates a session's pair; a login adds a session; a
//! logout takes one out of the pool and revokes its access token and, with the refresh token in
//! the body, the whole session (every access token it was ever issued). Right after each logout
//! returns, its current access token is presented to every books instance directly
//! (`MIXED_BOOKS`, bypassing the gateway), repeated every millisecond while one still accepts it:
//! how many were accepted at that first probe and how long until all refused. After the run,
//! every access token of every logged-out session is presented to every books instance, and its
//! last refresh token to every auth instance (`MIXED_AUTH`); each must get `401 token_revoked`.
//!
//! Each user has a client address of its own, sent as `X-Forwarded-For` (the services trust the
//! gateway on 127.0.0.1), as many clients behind a real gateway would have.
//!
//! Settings (environment): `MIXED_GATEWAY` (host:port), `MIXED_RATE` (requests/s),
//! `MIXED_SECONDS`, `MIXED_USERS` (a file of `username<TAB>password` lines), `MIXED_IDS` (a file
//! of book ids), `MIXED_BOOKS` and `MIXED_AUTH` (comma-separated host:port of each instance),
//! `MIXED_SESSIONS` (default 64), `MIXED_CONNECTIONS` (default 64), `MIXED_SEED`; `MIXED_MIX`,
//! the five percentages in the order above (default `90,6,2,1,1`). With `MIXED_TOKEN` (an access
//! token) and a mix of reads only, the run logs nobody in and every read carries that token:
//! `deploy/bench.py` drives a books instance at a fixed rate that way, with and without a login
//! flood (no users, books or auth lists needed). Prints one JSON object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| shared::server::exit(2, format!("{name} is required")))
}

fn var_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| shared::server::exit(2, format!("{name}: not a number")))
        })
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Get,
    List,
    Refresh,
    Login,
    Logout,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Get,
        Kind::List,
        Kind::Refresh,
        Kind::Login,
        Kind::Logout,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Get => "GET /books/{id}",
            Kind::List => "GET /books",
            Kind::Refresh => "POST /auth/refresh",
            Kind::Login => "POST /auth/login",
            Kind::Logout => "POST /auth/logout",
        }
    }

    fn expected(self) -> u16 {
        if self == Kind::Logout {
            204
        } else {
            200
        }
    }
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The mix: percentages of `Kind::ALL`, in that order.
const DEFAULT_MIX: [usize; 5] = [90, 6, 2, 1, 1];

/// `MIXED_MIX`: five whole percentages (GET, page, refresh, login, logout) adding up to 100.
fn mix() -> [usize; 5] {
    let Ok(text) = std::env::var("MIXED_MIX") else {
        return DEFAULT_MIX;
    };
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| shared::server::exit(2, "MIXED_MIX: five whole numbers"));
    match <[usize; 5]>::try_from(parts) {
        Ok(mix) if mix.iter().sum::<usize>() == 100 => mix,
        _ => shared::server::exit(2, "MIXED_MIX: five percentages adding up to 100"),
    }
}

/// The kind of every request of the run: each block of 100 holds the exact mix, shuffled.
fn schedule(total: usize, seed: u64, mix: [usize; 5]) -> Vec<Kind> {
    let mut block = Vec::with_capacity(100);
    for (kind, n) in Kind::ALL.into_iter().zip(mix) {
        block.extend(std::iter::repeat_n(kind, n));
    }
    let mut rng = Rng(seed | 1);
    let mut kinds = Vec::with_capacity(total + 100);
    while kinds.len() < total {
        for i in (1..block.len()).rev() {
            block.swap(i, rng.below(i + 1));
        }
        kinds.extend_from_slice(&block);
    }
    kinds.truncate(total);
    kinds
}

/// One keep-alive HTTP/1.1 connection, hand-rolled: a general client (reqwest) would cost the
/// shared cores more than the gateway it measures.
struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Conn {
    fn new(addr: &str) -> Self {
        Conn {
            addr: addr.to_owned(),
            stream: None,
            buf: Vec::with_capacity(8192),
        }
    }

    async fn send(&mut self, request: &[u8]) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let result = self.exchange(request).await;
        match &result {
            Ok((_, false)) => {}
            // The server closes after this answer (nginx's keepalive_requests), or it failed.
            Ok((_, true)) | Err(_) => self.stream = None,
        }
        result.map(|(response, _)| response)
    }

    /// The response and whether the server closes the connection after it.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(Response, bool)> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).await?;
        self.buf.clear();
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(eof());
            }
        };
        let head = std::str::from_utf8(&self.buf[..end]).map_err(|_| bad("response head"))?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        for (name, value) in head.lines().skip(1).filter_map(|l| l.split_once(':')) {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| bad("content-length"))?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let mut rest = self.buf.split_off(end + 4);
        if !chunked {
            while rest.len() < length {
                if stream.read_buf(&mut rest).await? == 0 {
                    return Err(eof());
                }
            }
            rest.truncate(length);
            return Ok((Response { status, body: rest }, close));
        }
        // Chunked: size lines and data until the zero chunk and its empty trailer.
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = loop {
                if let Some(i) = rest[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + i;
                }
                if stream.read_buf(&mut rest).await? == 0 {
                    return Err(eof());
                }
            };
            let size = std::str::from_utf8(&rest[at..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| bad("chunk size"))?;
            let data = line_end + 2;
            while rest.len() < data + size + 2 {
                if stream.read_buf(&mut rest).await? == 0 {
                    return Err(eof());
                }
            }
            if size == 0 {
                return Ok((Response { status, body }, close));
            }
            body.extend_from_slice(&rest[data..data + size]);
            at = data + size + 2;
        }
    }
}

fn request(
    method: &str,
    path: &str,
    bearer: Option<&str>,
    client: Option<&str>,
    body: Option<&str>,
) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: gateway\r\nUser-Agent: mixed-load\r\n");
    if let Some(token) = bearer {
        out.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(address) = client {
        out.push_str(&format!("X-Forwarded-For: {address}\r\n"));
    }
    match body {
        Some(body) => out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None if method == "POST" => out.push_str("Content-Length: 0\r\n\r\n"),
        None => out.push_str("\r\n"),
    }
    out.into_bytes()
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn tokens(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some((
        v["access_token"].as_str()?.to_owned(),
        v["refresh_token"].as_str()?.to_owned(),
    ))
}

struct User {
    name: String,
    password: String,
    address: String,
}

struct Session {
    user: usize,
    /// (current access token, current refresh token)
    pair: Mutex<(String, String)>,
    /// Every access token the session was issued.
    issued: Mutex<Vec<String>>,
    /// A refresh or the logout is in flight (each needs the session to itself).
    busy: AtomicBool,
    logout_started: AtomicBool,
}

impl Session {
    fn new(user: usize, access: String, refresh: String) -> Arc<Self> {
        Arc::new(Session {
            user,
            issued: Mutex::new(vec![access.clone()]),
            pair: Mutex::new((access, refresh)),
            busy: AtomicBool::new(false),
            logout_started: AtomicBool::new(false),
        })
    }

    fn access(&self) -> String {
        self.pair.lock().unwrap().0.clone()
    }
}

/// A session after its logout returned.
struct Revoked {
    session: Arc<Session>,
    /// From the logout's answer until every books instance refused its access token.
    propagation_us: Option<u64>,
    accepted_at_first_probe: usize,
    other_at_first_probe: usize,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// GETs and pages refused because a logout of their session raced them (sent before the
    /// logout returned): correct answers, not counted as errors.
    raced_logout: u64,
}

struct Shared {
    users: Vec<User>,
    ids: Vec<String>,
    books: Vec<String>,
    gateway: String,
    pool: Mutex<Vec<Arc<Session>>>,
    revoked: Mutex<Vec<Revoked>>,
    next_user: AtomicUsize,
    tallies: Mutex<BTreeMap<Kind, Tally>>,
    /// Requests sent more than 1 ms after they were due (every connection was busy).
    late: AtomicU64,
    skipped: AtomicU64,
    probes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn record(&self, kind: Kind, latency: Duration, error: Option<String>, raced: bool) {
        let mut tallies = self.tallies.lock().unwrap();
        let tally = tallies.entry(kind).or_default();
        tally
            .latencies_us
            .push(latency.as_micros().min(u32::MAX as u128) as u32);
        if raced {
            tally.raced_logout += 1;
        }
        if let Some(error) = error {
            *tally.errors.entry(error).or_default() += 1;
        }
    }

    fn pick(&self, rng: &mut Rng) -> Option<Arc<Session>> {
        let pool = self.pool.lock().unwrap();
        (!pool.is_empty()).then(|| pool[rng.below(pool.len())].clone())
    }

    /// A session no refresh or logout is using, marked busy.
    fn claim(&self, rng: &mut Rng) -> Option<Arc<Session>> {
        for _ in 0..16 {
            let session = self.pick(rng)?;
            if !session.busy.swap(true, Ordering::AcqRel) {
                return Some(session);
            }
        }
        None
    }

    async fn login(&self, conn: &mut Conn, user: usize) -> Result<Arc<Session>, String> {
        let u = &self.users[user];
        let body = json!({"username": u.name, "password": u.password}).to_string();
        let req = request("POST", "/auth/login", None, Some(&u.address), Some(&body));
        let response = conn.send(&req).await.map_err(|e| format!("io: {e}"))?;
        match (response.status, tokens(&response.body)) {
            (200, Some((access, refresh))) => Ok(Session::new(user, access, refresh)),
            (status, _) => Err(format!("{status} {}", error_code(&response.body))),
        }
    }
}

/// Sends one request of `kind`; `Err` names what went wrong, `Ok(true)` a refusal that a logout
/// of the same session raced.
async fn one(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    kind: Kind,
    rng: &mut Rng,
) -> Result<bool, String> {
    let status_error = |r: &Response| format!("{} {}", r.status, error_code(&r.body));
    match kind {
        Kind::Get | Kind::List => {
            let session = shared.pick(rng).ok_or("no session")?;
            let path = if kind == Kind::Get {
                format!("/books/{}", shared.ids[rng.below(shared.ids.len())])
            } else {
                use base64::Engine;
                let after = &shared.ids[rng.below(shared.ids.len())];
                format!(
                    "/books?limit=20&cursor={}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
                )
            };
            let req = request("GET", &path, Some(&session.access()), None, None);
            let response = conn.send(&req).await.map_err(|e| format!("io: {e}"))?;
            match response.status {
                200 => Ok(false),
                401 if session.logout_started.load(Ordering::Acquire)
                    && error_code(&response.body) == "token_revoked" =>
                {
                    Ok(true)
                }
                _ => Err(status_error(&response)),
            }
        }
        Kind::Refresh => {
            let session = shared.claim(rng).ok_or("no idle session")?;
            let refresh = session.pair.lock().unwrap().1.clone();
            let address = &shared.users[session.user].address;
            let req = request("POST", "/auth/refresh", Some(&refresh), Some(address), None);
            let result = conn.send(&req).await.map_err(|e| format!("io: {e}"));
            let outcome = match result {
                Ok(r) if r.status == 200 => match tokens(&r.body) {
                    Some((access, refresh)) => {
                        session.issued.lock().unwrap().push(access.clone());
                        *session.pair.lock().unwrap() = (access, refresh);
                        Ok(false)
                    }
                    None => Err("200 without a pair".to_owned()),
                },
                Ok(r) => Err(status_error(&r)),
                Err(e) => Err(e),
            };
            if outcome.is_err() {
                // Its refresh token may be spent: the session leaves the pool.
                shared
                    .pool
                    .lock()
                    .unwrap()
                    .retain(|s| !Arc::ptr_eq(s, &session));
            }
            session.busy.store(false, Ordering::Release);
            outcome
        }
        Kind::Login => {
            let user = shared.next_user.fetch_add(1, Ordering::Relaxed) % shared.users.len();
            let session = shared.login(conn, user).await?;
            shared.pool.lock().unwrap().push(session);
            Ok(false)
        }
        Kind::Logout => {
            let session = shared.claim(rng).ok_or("no idle session")?;
            shared
                .pool
                .lock()
                .unwrap()
                .retain(|s| !Arc::ptr_eq(s, &session));
            session.logout_started.store(true, Ordering::Release);
            let (access, refresh) = session.pair.lock().unwrap().clone();
            let body = json!({ "refresh_token": refresh }).to_string();
            let address = &shared.users[session.user].address;
            let req = request(
                "POST",
                "/auth/logout",
                Some(&access),
                Some(address),
                Some(&body),
            );
            let response = conn.send(&req).await.map_err(|e| format!("io: {e}"))?;
            if response.status != 204 {
                return Err(status_error(&response));
            }
            // Probed beside the run, so the logout's own latency ends here.
            let returned = Instant::now();
            let (books, id) = (shared.books.clone(), shared.ids[0].clone());
            let probes = shared.clone();
            let task = tokio::spawn(async move {
                let (accepted, other, propagation) = probe(&books, &id, &access).await;
                probes.revoked.lock().unwrap().push(Revoked {
                    session,
                    propagation_us: propagation.map(|d| (d - returned).as_micros() as u64),
                    accepted_at_first_probe: accepted,
                    other_at_first_probe: other,
                });
            });
            shared.probes.lock().unwrap().push(task);
            Ok(false)
        }
    }
}

/// Presents `access` to every books instance until each refuses it (1 ms apart, at most 5 s):
/// how many accepted it (200) at the first try, how many answered something else, and when the
/// last one refused.
async fn probe(books: &[String], id: &str, access: &str) -> (usize, usize, Option<Instant>) {
    let req = request("GET", &format!("/books/{id}"), Some(access), None, None);
    let mut pending: Vec<Conn> = books.iter().map(|b| Conn::new(b)).collect();
    let (mut accepted_first, mut other_first, mut first) = (0, 0, true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for mut conn in pending {
            match conn.send(&req).await {
                Ok(r) if r.status == 401 && error_code(&r.body) == "token_revoked" => {}
                Ok(r) if r.status == 200 => {
                    accepted_first += usize::from(first);
                    still.push(conn);
                }
                Ok(r) => {
                    other_first += usize::from(first);
                    if first {
                        eprintln!("probe after logout: {} {}", r.status, error_code(&r.body));
                    }
                    still.push(conn);
                }
                Err(e) => {
                    other_first += usize::from(first);
                    eprintln!("probe after logout: {e}");
                    still.push(conn);
                }
            }
        }
        pending = still;
        first = false;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    (
        accepted_first,
        other_first,
        pending.is_empty().then(Instant::now),
    )
}

/// After the run: every access token of every logged-out session to every books instance, the
/// last refresh token to every auth instance. Counts (refused as `token_revoked`, accepted,
/// other answers).
async fn verify_revoked(
    revoked: &[Revoked],
    books: &[String],
    auth: &[String],
    users: &[User],
    id: &str,
) -> Value {
    let mut out = BTreeMap::new();
    for (target, addrs) in [("books", books), ("auth", auth)] {
        let mut tasks = Vec::new();
        for addr in addrs {
            let requests: Vec<Vec<u8>> = revoked
                .iter()
                .flat_map(|r| {
                    if target == "books" {
                        r.session
                            .issued
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|a| request("GET", &format!("/books/{id}"), Some(a), None, None))
                            .collect::<Vec<_>>()
                    } else {
                        let refresh = r.session.pair.lock().unwrap().1.clone();
                        // From the session's own client, so only the revocation can refuse it.
                        let address = &users[r.session.user].address;
                        vec![request(
                            "POST",
                            "/auth/refresh",
                            Some(&refresh),
                            Some(address),
                            None,
                        )]
                    }
                })
                .collect();
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(&addr);
                let (mut refused, mut accepted, mut other) = (0u64, 0u64, BTreeMap::new());
                for req in requests {
                    match conn.send(&req).await {
                        Ok(r) if r.status == 401 && error_code(&r.body) == "token_revoked" => {
                            refused += 1
                        }
                        Ok(r) if r.status == 200 => accepted += 1,
                        Ok(r) => {
                            *other
                                .entry(format!("{} {}", r.status, error_code(&r.body)))
                                .or_insert(0u64) += 1
                        }
                        Err(e) => *other.entry(format!("io: {e}")).or_insert(0) += 1,
                    }
                }
                (
                    addr,
                    json!({"refused_token_revoked": refused, "accepted": accepted, "other": other}),
                )
            }));
        }
        let mut per = BTreeMap::new();
        for task in tasks {
            let (addr, figures) = task.await.expect("verify task");
            per.insert(addr, figures);
        }
        out.insert(target, per);
    }
    json!(out)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// `MIXED_USERS`: a file of `username<TAB>password` lines; each user gets a client address.
fn read_users() -> Vec<User> {
    std::fs::read_to_string(var("MIXED_USERS"))
        .unwrap_or_else(|e| shared::server::exit(2, format!("MIXED_USERS: {e}")))
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (name, password) = line.split_once('\t')?;
            Some(User {
                name: name.to_owned(),
                password: password.to_owned(),
                address: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            })
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let gateway = var("MIXED_GATEWAY");
    let rate = var_or("MIXED_RATE", 1000).max(1);
    let seconds = var_or("MIXED_SECONDS", 60);
    let sessions = var_or("MIXED_SESSIONS", 64) as usize;
    let connections = var_or("MIXED_CONNECTIONS", 64) as usize;
    let seed = var_or("MIXED_SEED", 16);
    let list = |name: &str| -> Vec<String> {
        var(name)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mix = mix();
    // Reads with one token made beforehand: no logins, so the target may be a books instance
    // itself, and there are no users, logouts or instances to probe.
    let token = std::env::var("MIXED_TOKEN").ok();
    if token.is_some() && mix[2..].iter().any(|&n| n > 0) {
        shared::server::exit(2, "MIXED_TOKEN is for a mix of reads only");
    }
    let (books, auth, users) = if token.is_some() {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        (list("MIXED_BOOKS"), list("MIXED_AUTH"), read_users())
    };
    let ids: Vec<String> = std::fs::read_to_string(var("MIXED_IDS"))
        .unwrap_or_else(|e| shared::server::exit(2, format!("MIXED_IDS: {e}")))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if ids.is_empty()
        || token.is_none() && (users.is_empty() || books.is_empty() || auth.is_empty())
    {
        shared::server::exit(
            2,
            "MIXED_USERS, MIXED_IDS, MIXED_BOOKS and MIXED_AUTH must name something",
        );
    }

    let shared = Arc::new(Shared {
        users,
        ids,
        books,
        gateway,
        pool: Mutex::new(Vec::new()),
        revoked: Mutex::new(Vec::new()),
        next_user: AtomicUsize::new(0),
        tallies: Mutex::new(BTreeMap::new()),
        late: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        probes: Mutex::new(Vec::new()),
    });

    // The starting sessions, before the clock starts.
    let mut conn = Conn::new(&shared.gateway);
    if let Some(access) = &token {
        let session = Session::new(0, access.clone(), String::new());
        shared.pool.lock().unwrap().push(session);
    }
    let sessions = if token.is_some() { 0 } else { sessions };
    for _ in 0..sessions {
        let user = shared.next_user.fetch_add(1, Ordering::Relaxed) % shared.users.len();
        let session = shared
            .login(&mut conn, user)
            .await
            .unwrap_or_else(|e| shared::server::exit(1, format!("initial login: {e}")));
        shared.pool.lock().unwrap().push(session);
    }
    drop(conn);

    let total = (rate * seconds) as usize;
    let kinds = Arc::new(schedule(total, seed, mix));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let due = move |i: usize| start + interval.mul_f64(i as f64);

    // The pacer: a plain thread sleeping until each request is due (nanosleep, tens of µs of
    // slack; tokio's timer has 1 ms granularity), then handing its index on.
    let (tx, rx) = mpsc::unbounded_channel::<usize>();
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = due(i);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send(i).is_err() {
                break;
            }
        }
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    for w in 0..connections {
        let (shared, rx, kinds) = (shared.clone(), rx.clone(), kinds.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w as u64 + 1));
            let mut conn = Conn::new(&shared.gateway);
            loop {
                let Some(i) = rx.lock().await.recv().await else {
                    break;
                };
                let at = due(i);
                if at.elapsed() > Duration::from_millis(1) {
                    shared.late.fetch_add(1, Ordering::Relaxed);
                }
                let kind = kinds[i];
                let result = one(&shared, &mut conn, kind, &mut rng).await;
                let latency = at.elapsed();
                match result {
                    Ok(raced) => shared.record(kind, latency, None, raced),
                    Err(e) if e.starts_with("no ") => {
                        shared.skipped.fetch_add(1, Ordering::Relaxed);
                        shared.record(kind, latency, Some(e), false);
                    }
                    Err(e) => shared.record(kind, latency, Some(e), false),
                }
            }
        }));
    }
    // The workers end when the pacer has handed out every index (and dropped the sender);
    // joining the pacer first would block this runtime's only thread.
    for worker in workers {
        worker.await.expect("worker");
    }
    pacer.join().expect("pacer");
    let elapsed = start.elapsed();
    let probes = std::mem::take(&mut *shared.probes.lock().unwrap());
    for task in probes {
        task.await.expect("probe");
    }

    let revoked = std::mem::take(&mut *shared.revoked.lock().unwrap());
    let verified = verify_revoked(
        &revoked,
        &shared.books,
        &auth,
        &shared.users,
        &shared.ids[0],
    )
    .await;
    let mut propagation: Vec<u32> = revoked
        .iter()
        .filter_map(|r| r.propagation_us.map(|us| us as u32))
        .collect();
    propagation.sort_unstable();
    let mut endpoints = serde_json::Map::new();
    let mut errors_total = 0;
    let mut tallies = std::mem::take(&mut *shared.tallies.lock().unwrap());
    for kind in Kind::ALL {
        let Some(mut tally) = tallies.remove(&kind) else {
            continue;
        };
        tally.latencies_us.sort_unstable();
        let errors: u64 = tally.errors.values().sum();
        errors_total += errors;
        endpoints.insert(
            kind.name().to_owned(),
            json!({
                "requests": tally.latencies_us.len(),
                "expected_status": kind.expected(),
                "errors": errors,
                "error_kinds": tally.errors,
                "refused_after_racing_logout": tally.raced_logout,
                "p50_ms": percentile(&tally.latencies_us, 50.0),
                "p90_ms": percentile(&tally.latencies_us, 90.0),
                "p99_ms": percentile(&tally.latencies_us, 99.0),
                "max_ms": percentile(&tally.latencies_us, 100.0),
            }),
        );
    }
    let result = json!({
        "rate": rate,
        "seconds": seconds,
        "scheduled": total,
        "achieved_rate": total as f64 / elapsed.as_secs_f64(),
        "elapsed_s": elapsed.as_secs_f64(),
        "connections": connections,
        "initial_sessions": sessions,
        "sent_over_1ms_late": shared.late.load(Ordering::Relaxed),
        "skipped_no_session": shared.skipped.load(Ordering::Relaxed),
        "errors": errors_total,
        "endpoints": endpoints,
        "logouts": revoked.len(),
        "revoked_access_tokens": revoked.iter().map(|r| r.session.issued.lock().unwrap().len()).sum::<usize>(),
        "probe_right_after_logout": {
            "accepted_at_first_probe": revoked.iter().map(|r| r.accepted_at_first_probe).sum::<usize>(),
            "other_answer_at_first_probe": revoked.iter().map(|r| r.other_at_first_probe).sum::<usize>(),
            "probes": revoked.len() * shared.books.len(),
            "never_refused_within_5s": revoked.iter().filter(|r| r.propagation_us.is_none()).count(),
            "all_refused_p50_ms": percentile(&propagation, 50.0),
            "all_refused_p99_ms": percentile(&propagation, 99.0),
            "all_refused_max_ms": percentile(&propagation, 100.0),
        },
        "after_run": verified,
    });
    println!("{result}");
}
