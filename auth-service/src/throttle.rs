//! Login throttling: per-username and per-client-address attempt counters with growing back-off,
//! shared by every instance through Redis (one Lua script, so check-and-count is atomic) or kept
//! in-process on the embedded default. A locked-out attempt is refused before any argon2 work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use redis::aio::ConnectionManager;
use shared::revocation::StoreUnavailable;

#[derive(Clone, Debug)]
pub struct ThrottlePolicy {
    /// Attempts per username within `window` before back-off starts.
    pub per_username: u64,
    /// Attempts per client address within `window` before back-off starts.
    pub per_address: u64,
    pub window: Duration,
    /// First lock-out; each further attempt over the limit doubles it, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_username: 5,
            per_address: 100,
            window: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl ThrottlePolicy {
    /// Lock-out after the `count`-th attempt against `limit`, if any.
    fn delay(&self, count: u64, limit: u64) -> Option<Duration> {
        let over = count.checked_sub(limit)?;
        let factor = 1u32.checked_shl(over.min(31) as u32).unwrap_or(u32::MAX);
        Some(self.base_delay.saturating_mul(factor).min(self.max_delay))
    }
}

/// `Ok(())` to go on, `Err(wait)` when locked out.
pub type Verdict = Result<(), Duration>;

pub trait LoginThrottle: Send + Sync + 'static {
    /// Counts an attempt for this username and address, unless one of them is locked out.
    fn attempt<'a>(
        &'a self,
        username: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, StoreUnavailable>>;

    /// A successful login clears the username's counter (the address keeps its count).
    fn succeeded<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), StoreUnavailable>>;
}

/// Check both locks; if free, count the attempt on both keys and lock a key that reached its
/// limit. Returns the milliseconds to wait, 0 when the attempt may proceed.
const ATTEMPT_SCRIPT: &str = r#"
local wait = math.max(redis.call('PTTL', KEYS[2]), redis.call('PTTL', KEYS[4]), 0)
if wait > 0 then return wait end
local function hit(count_key, lock_key, limit)
  local n = redis.call('INCR', count_key)
  if n == 1 then redis.call('PEXPIRE', count_key, ARGV[3]) end
  if n >= limit then
    local delay = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (n - limit))
    redis.call('SET', lock_key, 1, 'PX', math.floor(delay))
  end
end
hit(KEYS[1], KEYS[2], tonumber(ARGV[1]))
hit(KEYS[3], KEYS[4], tonumber(ARGV[2]))
return 0
"#;

pub struct RedisThrottle {
    connection: ConnectionManager,
    prefix: String,
    policy: ThrottlePolicy,
}

impl RedisThrottle {
    pub async fn connect(
        url: &str,
        prefix: &str,
        policy: ThrottlePolicy,
    ) -> Result<Self, StoreUnavailable> {
        let (_, connection) = shared::revocation::connect_redis(url).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            policy,
        })
    }

    fn keys(&self, kind: &str, id: &str) -> (String, String) {
        (
            format!("{}throttle:{kind}:{id}", self.prefix),
            format!("{}throttle-lock:{kind}:{id}", self.prefix),
        )
    }
}

impl LoginThrottle for RedisThrottle {
    fn attempt<'a>(
        &'a self,
        username: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, StoreUnavailable>> {
        async move {
            let (user_count, user_lock) = self.keys("user", username);
            let (addr_count, addr_lock) = self.keys("addr", address);
            let p = &self.policy;
            let mut connection = self.connection.clone();
            let wait_ms: i64 = redis::cmd("EVAL")
                .arg(ATTEMPT_SCRIPT)
                .arg(4)
                .arg(&[user_count, user_lock, addr_count, addr_lock])
                .arg(p.per_username)
                .arg(p.per_address)
                .arg(p.window.as_millis() as u64)
                .arg(p.base_delay.as_millis() as u64)
                .arg(p.max_delay.as_millis() as u64)
                .query_async(&mut connection)
                .await?;
            Ok(match u64::try_from(wait_ms) {
                Ok(ms) if ms > 0 => Err(Duration::from_millis(ms)),
                _ => Ok(()),
            })
        }
        .boxed()
    }

    fn succeeded<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        async move {
            let (count, lock) = self.keys("user", username);
            let mut connection = self.connection.clone();
            redis::cmd("DEL")
                .arg(&[count, lock])
                .query_async::<()>(&mut connection)
                .await?;
            Ok(())
        }
        .boxed()
    }
}

struct Counter {
    count: u64,
    window_ends: Instant,
    locked_until: Option<Instant>,
}

/// The same rules for one process.
pub struct MemoryThrottle {
    counters: Mutex<HashMap<String, Counter>>,
    policy: ThrottlePolicy,
}

impl MemoryThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            counters: Mutex::default(),
            policy,
        }
    }
}

impl LoginThrottle for MemoryThrottle {
    fn attempt<'a>(
        &'a self,
        username: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, StoreUnavailable>> {
        let now = Instant::now();
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if counters.len() > 100_000 {
            counters.retain(|_, c| c.window_ends > now || c.locked_until.is_some_and(|t| t > now));
        }
        let keys = [
            (format!("user:{username}"), self.policy.per_username),
            (format!("addr:{address}"), self.policy.per_address),
        ];
        let wait = keys
            .iter()
            .filter_map(|(key, _)| counters.get(key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        if let Some(wait) = wait {
            return future::ready(Ok(Err(wait))).boxed();
        }
        for (key, limit) in keys {
            let counter = counters.entry(key).or_insert(Counter {
                count: 0,
                window_ends: now + self.policy.window,
                locked_until: None,
            });
            if counter.window_ends <= now {
                counter.count = 0;
                counter.window_ends = now + self.policy.window;
            }
            counter.count += 1;
            if let Some(delay) = self.policy.delay(counter.count, limit) {
                counter.locked_until = Some(now + delay);
            }
        }
        future::ready(Ok(Ok(()))).boxed()
    }

    fn succeeded<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&format!("user:{username}"));
        future::ready(Ok(())).boxed()
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

/// The client's address: the socket peer, or, when the peer is a trusted proxy (the gateway),
/// the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &TrustedProxies,
) -> String {
    let Some(peer) = peer else {
        return "unknown".to_owned();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    forwarded_for
        .into_iter()
        .flat_map(|header| header.rsplit(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_is_capped() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.delay(4, 5), None);
        assert_eq!(policy.delay(5, 5), Some(Duration::from_secs(1)));
        assert_eq!(policy.delay(7, 5), Some(Duration::from_secs(4)));
        assert_eq!(policy.delay(500, 5), Some(Duration::from_secs(900)));
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_a_trusted_proxy() {
        let gateway: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = TrustedProxies::parse("10.0.0.2").unwrap();
        let client = Some("203.0.113.9, 10.0.0.2");
        assert_eq!(
            client_address(Some(gateway), client, &trusted),
            "203.0.113.9"
        );
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_address(Some(stranger), client, &trusted),
            "198.51.100.7"
        );
        assert_eq!(
            client_address(Some(gateway), Some("junk"), &trusted),
            "10.0.0.2"
        );
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, fd00::/8").unwrap();
        for inside in ["10.1.2.3", "192.168.1.7", "fd12::1"] {
            assert!(trusted.contains(&inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1"] {
            assert!(!trusted.contains(&outside.parse().unwrap()), "{outside}");
        }
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("gateway").is_err());
        assert!(TrustedProxies::parse("172.16.0.0/12")
            .unwrap()
            .contains(&"172.31.255.255".parse().unwrap()));
    }

    #[tokio::test]
    async fn memory_throttle_locks_after_the_limit_and_resets_on_success() {
        let throttle = MemoryThrottle::new(ThrottlePolicy {
            per_username: 3,
            ..ThrottlePolicy::default()
        });
        for _ in 0..3 {
            assert!(throttle.attempt("ann", "1.2.3.4").await.unwrap().is_ok());
        }
        let wait = throttle
            .attempt("ann", "1.2.3.4")
            .await
            .unwrap()
            .unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        throttle.succeeded("ann").await.unwrap();
        assert!(throttle.attempt("ann", "1.2.3.4").await.unwrap().is_ok());
    }
}
