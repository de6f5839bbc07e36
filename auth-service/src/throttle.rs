//! Throttling of everything that costs an argon2 computation: login, registration and password
//! change. Attempt counters with growing back-off, shared by every instance through Redis (one
//! Lua script, so check-and-count is atomic) or kept in-process on the embedded default. A refused
//! attempt is answered before any argon2 work.
//!
//! What is counted (each within `window`):
//! - login: per (username, client address) pair with the tight limit, per username alone with
//!   [`USERNAME_FACTOR`] times that, and per client address;
//! - registration: per client address;
//! - password change: per user with the tight login limit, and per client address.
//!
//! Usernames are counted by the SHA-256 of their normalised form, never by the raw input, and
//! client addresses by [`address_key`] (IPv6 by its /64).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use aws_lc_rs::digest;
use futures_util::future::{self, BoxFuture, FutureExt};
use shared::revocation::{StoreUnavailable, WorkerConnections};
use shared::Metrics;

use crate::domain::Username;
use crate::error::AuthError;

/// The per-username limit (every address together) is this many times the per-pair limit: loose
/// enough that a stranger elsewhere cannot lock the owner out with a handful of guesses, tight
/// enough that a distributed guesser still meets a wall.
pub const USERNAME_FACTOR: u64 = 20;

#[derive(Clone, Debug)]
pub struct ThrottlePolicy {
    /// Login attempts per (username, client address) within `window` (`AUTH_LOGIN_LIMIT_USERNAME`);
    /// also password-change attempts per user.
    pub per_pair: u64,
    /// Login attempts per username from every address together.
    pub per_username: u64,
    /// Login attempts, and password-change attempts, per client address
    /// (`AUTH_LOGIN_LIMIT_ADDRESS`).
    pub per_address: u64,
    /// Registrations per client address (`AUTH_REGISTER_LIMIT_ADDRESS`).
    pub register_per_address: u64,
    pub window: Duration,
    /// First lock-out; each further attempt over the limit doubles it, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self::new(5, 100, 10)
    }
}

impl ThrottlePolicy {
    /// The policy of the three configured limits; the per-username limit is derived.
    pub fn new(per_pair: u64, per_address: u64, register_per_address: u64) -> Self {
        Self {
            per_pair,
            per_username: per_pair.saturating_mul(USERNAME_FACTOR),
            per_address,
            register_per_address,
            window: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }

    /// The refusal of the `count`-th attempt in a window against `limit`, if any: every attempt
    /// past the limit is refused and locks the counter for 1 s, doubling per further attempt.
    fn delay(&self, count: u64, limit: u64) -> Option<Duration> {
        let over = count.checked_sub(limit)?.checked_sub(1)?;
        let factor = 1u32.checked_shl(over.min(31) as u32).unwrap_or(u32::MAX);
        Some(self.base_delay.saturating_mul(factor).min(self.max_delay))
    }
}

/// `Ok(())` to go on, `Err(wait)` when locked out.
pub type Verdict = Result<(), Duration>;

/// One counter an attempt is counted on, and the attempts it allows per window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub limit: u64,
}

pub trait ThrottleStore: Send + Sync + 'static {
    /// Counts an attempt on every counter, unless one of them is locked: then nothing is counted.
    fn attempt<'a>(
        &'a self,
        counters: &'a [Counter],
    ) -> BoxFuture<'a, Result<Verdict, StoreUnavailable>>;

    /// Forgets a counter and its lock.
    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreUnavailable>>;
}

/// KEYS: count and lock key of each counter, in pairs. ARGV: window, base delay and maximum delay
/// (ms), then each counter's limit. Checks every lock; if all are free, counts the attempt on
/// every counter, and an attempt past a counter's limit is refused and locks that counter (1 s,
/// doubling). The refusal does not depend on timing: the attempt after the last allowed one is
/// refused however long the previous one took. Returns the milliseconds to wait, 0 when the
/// attempt may proceed.
const ATTEMPT_SCRIPT: &str = r#"
local wait = 0
for i = 2, #KEYS, 2 do
  wait = math.max(wait, redis.call('PTTL', KEYS[i]))
end
if wait > 0 then return wait end
for i = 1, #KEYS, 2 do
  local limit = tonumber(ARGV[3 + (i + 1) / 2])
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  if n > limit then
    local delay = math.max(1, math.floor(math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (n - limit - 1))))
    redis.call('SET', KEYS[i + 1], 1, 'PX', delay)
    wait = math.max(wait, delay)
  end
end
return wait
"#;

pub struct RedisThrottle {
    /// Each actix worker's own connection: counted on every login, on the request path.
    connections: WorkerConnections,
    prefix: String,
    policy: ThrottlePolicy,
}

impl RedisThrottle {
    pub async fn connect(
        target: &shared::RedisTarget,
        prefix: &str,
        policy: ThrottlePolicy,
    ) -> Result<Self, StoreUnavailable> {
        let connection = shared::revocation::connect_redis(target).await?;
        Ok(Self {
            connections: WorkerConnections::new(target, connection),
            prefix: prefix.to_owned(),
            policy,
        })
    }

    fn keys(&self, key: &str) -> (String, String) {
        (
            format!("{}throttle:{key}", self.prefix),
            format!("{}throttle-lock:{key}", self.prefix),
        )
    }
}

impl ThrottleStore for RedisThrottle {
    fn attempt<'a>(
        &'a self,
        counters: &'a [Counter],
    ) -> BoxFuture<'a, Result<Verdict, StoreUnavailable>> {
        async move {
            let p = &self.policy;
            let mut script = redis::cmd("EVAL");
            script.arg(ATTEMPT_SCRIPT).arg(counters.len() * 2);
            for counter in counters {
                let (count, lock) = self.keys(&counter.key);
                script.arg(count).arg(lock);
            }
            script
                .arg(p.window.as_millis() as u64)
                .arg(p.base_delay.as_millis() as u64)
                .arg(p.max_delay.as_millis() as u64);
            for counter in counters {
                script.arg(counter.limit);
            }
            let mut connection = self.connections.get().await?;
            let wait_ms: i64 = script.query_async(&mut connection).await?;
            Ok(match u64::try_from(wait_ms) {
                Ok(ms) if ms > 0 => Err(Duration::from_millis(ms)),
                _ => Ok(()),
            })
        }
        .boxed()
    }

    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        async move {
            let (count, lock) = self.keys(key);
            let mut connection = self.connections.get().await?;
            redis::cmd("DEL")
                .arg(&[count, lock])
                .query_async::<()>(&mut connection)
                .await?;
            Ok(())
        }
        .boxed()
    }
}

struct Count {
    count: u64,
    window_ends: Instant,
    locked_until: Option<Instant>,
}

/// The same rules for one process.
pub struct MemoryThrottle {
    counters: Mutex<HashMap<String, Count>>,
    policy: ThrottlePolicy,
}

impl MemoryThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            counters: Mutex::default(),
            policy,
        }
    }

    /// The keys held, for tests to look at what is stored.
    pub fn keys(&self) -> Vec<String> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.keys().cloned().collect()
    }
}

impl ThrottleStore for MemoryThrottle {
    fn attempt<'a>(
        &'a self,
        counters: &'a [Counter],
    ) -> BoxFuture<'a, Result<Verdict, StoreUnavailable>> {
        let now = Instant::now();
        let mut held = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() > 100_000 {
            held.retain(|_, c| c.window_ends > now || c.locked_until.is_some_and(|t| t > now));
        }
        let wait = counters
            .iter()
            .filter_map(|counter| held.get(&counter.key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        if let Some(wait) = wait {
            return future::ready(Ok(Err(wait))).boxed();
        }
        let mut refused: Option<Duration> = None;
        for counter in counters {
            let count = held.entry(counter.key.clone()).or_insert(Count {
                count: 0,
                window_ends: now + self.policy.window,
                locked_until: None,
            });
            if count.window_ends <= now {
                count.count = 0;
                count.window_ends = now + self.policy.window;
            }
            count.count += 1;
            if let Some(delay) = self.policy.delay(count.count, counter.limit) {
                count.locked_until = Some(now + delay);
                refused = refused.max(Some(delay));
            }
        }
        future::ready(Ok(refused.map_or(Ok(()), Err))).boxed()
    }

    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        future::ready(Ok(())).boxed()
    }
}

/// A login attempt that was let through; handed back when the password was right.
#[must_use]
pub struct LoginAttempt {
    pair: String,
}

/// A password-change attempt that was let through; handed back when the password was right.
#[must_use]
pub struct PasswordAttempt {
    user: String,
}

/// The throttle rules over a store: which counters each kind of attempt is counted on.
pub struct Throttle {
    store: Arc<dyn ThrottleStore>,
    policy: ThrottlePolicy,
    trusted: TrustedProxies,
    metrics: Arc<Metrics>,
}

impl Throttle {
    pub fn new(
        store: Arc<dyn ThrottleStore>,
        policy: ThrottlePolicy,
        trusted: TrustedProxies,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            policy,
            trusted,
            metrics,
        }
    }

    /// The counted form of the request's client address (see [`client_address`]).
    pub fn client(&self, req: &HttpRequest) -> String {
        // Every line, in order: a proxy that appends a line of its own after the client's must
        // not leave us reading the client's.
        let forwarded_for = req
            .headers()
            .get_all("x-forwarded-for")
            .map(|line| line.to_str().unwrap_or(UNREADABLE))
            .collect::<Vec<_>>()
            .join(",");
        client_address(
            req.peer_addr().map(|a| a.ip()),
            &forwarded_for,
            &self.trusted,
        )
    }

    /// Counts a login attempt on its (username, address) pair, its username and its address,
    /// unless one of them is locked (`RateLimited`). A name longer than any account's is refused
    /// at once and not counted: it cannot exist, so the answer reveals nothing.
    pub async fn login(&self, address: &str, username: &str) -> Result<LoginAttempt, AuthError> {
        if username.len() > Username::MAX_LEN {
            self.metrics.inc("auth_logins_total{result=\"failure\"}");
            return Err(AuthError::InvalidCredentials);
        }
        let name = name_key(username);
        let pair = format!("login-pair:{name}:{address}");
        let counters = [
            Counter {
                key: pair.clone(),
                limit: self.policy.per_pair,
            },
            Counter {
                key: format!("login-user:{name}"),
                limit: self.policy.per_username,
            },
            Counter {
                key: format!("login-addr:{address}"),
                limit: self.policy.per_address,
            },
        ];
        self.count(&counters, "auth_logins_total{result=\"throttled\"}")
            .await?;
        Ok(LoginAttempt { pair })
    }

    /// The right password clears the pair's counter; the username's and the address's keep
    /// counting, so a guesser cannot reset them by logging in to an account of their own.
    pub async fn login_succeeded(&self, attempt: LoginAttempt) -> Result<(), AuthError> {
        Ok(self.store.clear(&attempt.pair).await?)
    }

    /// Counts a registration on its client address, unless that is locked.
    pub async fn register(&self, address: &str) -> Result<(), AuthError> {
        let counters = [Counter {
            key: format!("register-addr:{address}"),
            limit: self.policy.register_per_address,
        }];
        self.count(&counters, "auth_throttled_total{endpoint=\"register\"}")
            .await
    }

    /// Counts a password-change attempt on the user (the tight login limit) and on the client
    /// address, unless one of them is locked.
    pub async fn password_change(
        &self,
        address: &str,
        user_id: &str,
    ) -> Result<PasswordAttempt, AuthError> {
        // The id comes from a verified token: bounded, and ours.
        let user = format!("password-user:{user_id}");
        let counters = [
            Counter {
                key: user.clone(),
                limit: self.policy.per_pair,
            },
            Counter {
                key: format!("password-addr:{address}"),
                limit: self.policy.per_address,
            },
        ];
        self.count(&counters, "auth_throttled_total{endpoint=\"password\"}")
            .await?;
        Ok(PasswordAttempt { user })
    }

    pub async fn password_verified(&self, attempt: PasswordAttempt) -> Result<(), AuthError> {
        Ok(self.store.clear(&attempt.user).await?)
    }

    /// A one-time code (second login step, enrolment, removal): throttled like a password, per
    /// user and per client address, before the code is checked. A million possible codes
    /// would otherwise fall to a few thousand guesses per valid window.
    pub async fn mfa_code(
        &self,
        address: &str,
        user_id: &str,
    ) -> Result<PasswordAttempt, AuthError> {
        let user = format!("mfa-user:{user_id}");
        let counters = [
            Counter {
                key: user.clone(),
                limit: self.policy.per_pair,
            },
            Counter {
                key: format!("mfa-addr:{address}"),
                limit: self.policy.per_address,
            },
        ];
        self.count(&counters, "auth_throttled_total{endpoint=\"mfa\"}")
            .await?;
        Ok(PasswordAttempt { user })
    }

    async fn count(&self, counters: &[Counter], throttled: &'static str) -> Result<(), AuthError> {
        match self.store.attempt(counters).await? {
            Ok(()) => Ok(()),
            Err(wait) => {
                self.metrics.inc(throttled);
                Err(AuthError::RateLimited(
                    wait.as_secs_f64().ceil().max(1.0) as u64
                ))
            }
        }
    }
}

/// The counted form of a username: the SHA-256 (hex) of the trimmed, lower-cased name, so a key's
/// size never depends on the input and the name itself is not stored.
pub fn name_key(username: &str) -> String {
    let normalised = username.trim().to_ascii_lowercase();
    let hash = digest::digest(&digest::SHA256, normalised.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in hash.as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The counted form of a client address: IPv4 whole; IPv6 by its /64, the smallest block a
/// subscriber is given and can rotate through at will; IPv4-mapped IPv6 as the IPv4 it is.
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128));
            format!("{network}/64")
        }
    }
}

/// Proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges (`10.0.0.0/8`), so an
/// ingress whose pods change address can be trusted as a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Comma-separated `IP` or `IP/PREFIX` entries.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (ip, bits) = entry.split_once('/').unwrap_or((entry, ""));
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("{entry:?} is not an IP address"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits = if bits.is_empty() {
                    max
                } else {
                    bits.parse::<u8>()
                        .ok()
                        .filter(|b| *b <= max)
                        .ok_or_else(|| format!("{entry:?} has a bad prefix length"))?
                };
                Ok((ip, bits))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), *bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), *bits),
            _ => false,
        })
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Stands in for an `X-Forwarded-For` line that is not visible ASCII: it is no address, so the
/// walk stops there.
const UNREADABLE: &str = "unreadable";

/// One `X-Forwarded-For` entry: an address, or an address with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address, keyed by [`address_key`]: the socket peer, or, when the peer is a
/// trusted proxy, the right-most `X-Forwarded-For` entry (every header line, in order,
/// comma-joined) that is not itself a trusted proxy. Entries are walked from the right because
/// each proxy appends what it saw; anything left of the first untrusted one is the client's say.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &str,
    trusted: &TrustedProxies,
) -> String {
    let Some(mut client) = peer.map(|ip| ip.to_canonical()) else {
        return "unknown".to_owned();
    };
    if trusted.contains(&client) {
        for hop in forwarded_for
            .rsplit(',')
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
        {
            match parse_hop(hop) {
                Some(ip) if trusted.contains(&ip) => client = ip,
                Some(ip) => {
                    client = ip;
                    break;
                }
                // Not an address: what a trusted proxy wrote is not trustworthy from here on,
                // so the last trusted hop stands for the client.
                None => break,
            }
        }
    }
    address_key(client)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn throttle(policy: ThrottlePolicy, trusted: &str) -> (Throttle, Arc<MemoryThrottle>) {
        let store = Arc::new(MemoryThrottle::new(policy.clone()));
        let throttle = Throttle::new(
            store.clone(),
            policy,
            TrustedProxies::parse(trusted).unwrap(),
            Arc::new(Metrics::new("test")),
        );
        (throttle, store)
    }

    fn from(peer: &str, forwarded_for: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(SocketAddr::new(ip(peer), 40000));
        for line in forwarded_for {
            req = req.append_header(("x-forwarded-for", *line));
        }
        req.to_http_request()
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.delay(5, 5), None);
        assert_eq!(policy.delay(6, 5), Some(Duration::from_secs(1)));
        assert_eq!(policy.delay(8, 5), Some(Duration::from_secs(4)));
        assert_eq!(policy.delay(500, 5), Some(Duration::from_secs(900)));
        assert_eq!(policy.per_username, 5 * USERNAME_FACTOR);
        assert_eq!(ThrottlePolicy::new(u64::MAX, 1, 1).per_username, u64::MAX);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_ipv4_mapped_as_ipv4() {
        for inside in [
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            "2001:db8:1:2:dead:beef:0:7",
        ] {
            assert_eq!(address_key(ip(inside)), "2001:db8:1:2::/64", "{inside}");
        }
        assert_eq!(address_key(ip("2001:db8:1:3::1")), "2001:db8:1:3::/64");
        assert_eq!(address_key(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(address_key(ip("203.0.113.10")), "203.0.113.10");
        assert_eq!(address_key(ip("::ffff:203.0.113.9")), "203.0.113.9");
        let nobody = TrustedProxies::default();
        assert_eq!(
            client_address(Some(ip("2001:db8:1:2::99")), "", &nobody),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_address(Some(ip("::ffff:198.51.100.7")), "", &nobody),
            "198.51.100.7"
        );
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_a_trusted_proxy() {
        let gateway = ip("10.0.0.2");
        let trusted = TrustedProxies::parse("10.0.0.2").unwrap();
        let client = "203.0.113.9, 10.0.0.2";
        assert_eq!(
            client_address(Some(gateway), client, &trusted),
            "203.0.113.9"
        );
        assert_eq!(
            client_address(Some(ip("198.51.100.7")), client, &trusted),
            "198.51.100.7"
        );
        assert_eq!(client_address(Some(gateway), "junk", &trusted), "10.0.0.2");
        // A trusted peer speaking IPv4-mapped IPv6 is still that peer.
        assert_eq!(
            client_address(Some(ip("::ffff:10.0.0.2")), "203.0.113.9", &trusted),
            "203.0.113.9"
        );
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_over_every_line() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let walk = |xff: &str| client_address(Some(ip("10.0.0.2")), xff, &trusted);
        // What the client wrote is left of what the proxies appended.
        assert_eq!(walk("6.6.6.6, 203.0.113.7"), "203.0.113.7");
        assert_eq!(walk("6.6.6.6, 203.0.113.7, 10.1.1.1"), "203.0.113.7");
        assert_eq!(walk("203.0.113.7:5555, 10.1.1.1"), "203.0.113.7");
        assert_eq!(walk("[2001:db8:5:6::1]:443"), "2001:db8:5:6::/64");
        assert_eq!(walk("6.6.6.6,,203.0.113.7, "), "203.0.113.7");
        // Junk right of the client's entries: its left is not believed.
        assert_eq!(walk("6.6.6.6, junk, 10.1.1.1"), "10.1.1.1");
        // Only proxies: the left-most of them.
        assert_eq!(walk("10.9.9.9, 10.1.1.1"), "10.9.9.9");
        assert_eq!(walk(""), "10.0.0.2");

        let (throttle, _) = throttle(ThrottlePolicy::default(), "10.0.0.0/8");
        // Separate header lines are read in order, as one list.
        let lines = from("10.0.0.2", &["6.6.6.6", "203.0.113.7, 10.1.1.1"]);
        assert_eq!(throttle.client(&lines), "203.0.113.7");
        let lines = from("10.0.0.2", &["203.0.113.7", "6.6.6.6"]);
        assert_eq!(throttle.client(&lines), "6.6.6.6");
        let untrusted = from("198.51.100.7", &["203.0.113.7"]);
        assert_eq!(throttle.client(&untrusted), "198.51.100.7");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, fd00::/8").unwrap();
        for inside in ["10.1.2.3", "192.168.1.7", "fd12::1"] {
            assert!(trusted.contains(&ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1"] {
            assert!(!trusted.contains(&ip(outside)), "{outside}");
        }
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("gateway").is_err());
        assert!(TrustedProxies::parse("172.16.0.0/12")
            .unwrap()
            .contains(&ip("172.31.255.255")));
    }

    #[test]
    fn names_are_keyed_by_the_hash_of_their_normal_form() {
        let key = name_key("  Alice ");
        assert_eq!(key, name_key("alice"));
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, name_key("alicia"));
    }

    #[tokio::test]
    async fn pair_limit_locks_the_pair_and_success_clears_it() {
        let (throttle, _) = throttle(ThrottlePolicy::new(3, 100, 10), "");
        let (here, there) = (from("198.51.100.1", &[]), from("198.51.100.2", &[]));
        for _ in 0..3 {
            let _ = throttle
                .login(&throttle.client(&here), "ann")
                .await
                .unwrap();
        }
        assert!(matches!(
            throttle.login(&throttle.client(&here), "Ann").await,
            Err(AuthError::RateLimited(1))
        ));
        // The owner elsewhere is not locked out; her success clears only her own pair.
        let attempt = throttle
            .login(&throttle.client(&there), "ann")
            .await
            .unwrap();
        throttle.login_succeeded(attempt).await.unwrap();
        assert!(throttle
            .login(&throttle.client(&here), "ann")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_username_alone_and_the_address_have_looser_limits() {
        let (throttle, _) = throttle(ThrottlePolicy::new(1, 4, 10), "");
        // per_username is 20: twenty addresses one guess each, the twenty-first is refused.
        for n in 0..20 {
            let _ = throttle
                .login(
                    &throttle.client(&from(&format!("198.51.100.{n}"), &[])),
                    "bob",
                )
                .await
                .unwrap();
        }
        let next = throttle
            .login(&throttle.client(&from("198.51.100.99", &[])), "bob")
            .await;
        assert!(matches!(next, Err(AuthError::RateLimited(_))));
        // per_address is 4: four names from one address, the fifth is refused.
        let here = from("203.0.113.1", &[]);
        for name in ["c1", "c2", "c3", "c4"] {
            let _ = throttle.login(&throttle.client(&here), name).await.unwrap();
        }
        assert!(throttle.login(&throttle.client(&here), "c5").await.is_err());
    }

    #[tokio::test]
    async fn over_long_names_are_refused_uncounted() {
        let (throttle, store) = throttle(ThrottlePolicy::new(1, 1, 1), "");
        let here = from("198.51.100.1", &[]);
        for _ in 0..3 {
            let refused = throttle
                .login(&throttle.client(&here), &"n".repeat(65))
                .await;
            assert!(matches!(refused, Err(AuthError::InvalidCredentials)));
        }
        assert!(store.keys().is_empty());
        let _ = throttle
            .login(&throttle.client(&here), &"n".repeat(64))
            .await
            .unwrap();
        assert!(store
            .keys()
            .iter()
            .all(|k| k.len() < 200 && !k.contains("nnn")));
    }
}
