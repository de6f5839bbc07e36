//! Where Redis is: the one parser of `REDIS_URL` (both services read it through
//! `config::Env::redis_url`).
//!
//! - `redis://...` or `rediss://...`: one server, as the `redis` crate reads the URL.
//! - `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]`: a Redis
//!   Sentinel deployment. The sentinels are asked for the current master of `MASTER_NAME`, and
//!   asked again whenever it fails or turns out to be a replica (a failover). `USER` and
//!   `PASSWORD` (percent-encoded) are sent to the sentinels and to the Redis servers alike.

use std::fmt;
use std::str::FromStr;

/// A parsed `REDIS_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: the URL as given (`redis://` or `rediss://`).
    Server(String),
    /// The master of a Redis Sentinel deployment.
    Sentinel(SentinelTarget),
}

/// `redis+sentinel://...`, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// The sentinels, in the order given: `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under (`sentinel monitor NAME ...`).
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

impl RedisTarget {
    /// Parses a `REDIS_URL` value; the error says what is wrong, without echoing a password.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.starts_with("redis://") || raw.starts_with("rediss://") {
            return Ok(RedisTarget::Server(raw.to_owned()));
        }
        let Some(rest) = raw.strip_prefix(SENTINEL_SCHEME) else {
            return Err("expected redis://HOST:PORT, rediss://HOST:PORT or \
                 redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]"
                .into());
        };
        SentinelTarget::parse(rest).map(RedisTarget::Sentinel)
    }

    pub fn is_sentinel(&self) -> bool {
        matches!(self, RedisTarget::Sentinel(_))
    }
}

impl FromStr for RedisTarget {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

impl SentinelTarget {
    /// Everything after `redis+sentinel://`.
    fn parse(rest: &str) -> Result<Self, String> {
        const FORM: &str =
            "expected redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]";
        if rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
            return Err(format!("{FORM}, without query, fragment or spaces"));
        }
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            format!("{FORM}: the master name is missing (the name in `sentinel monitor NAME ...`)")
        })?;
        // The password may itself contain '@' when not encoded: the last one ends it.
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').ok_or_else(|| {
                    format!("{FORM}: the part before '@' must be :PASSWORD or USER:PASSWORD")
                })?;
                let password = percent_decode(password)
                    .ok_or_else(|| format!("{FORM}: the password is not valid percent-encoding"))?;
                let user = percent_decode(user)
                    .ok_or_else(|| format!("{FORM}: the user is not valid percent-encoding"))?;
                (
                    Some(user).filter(|u| !u.is_empty()),
                    Some(password).filter(|p| !p.is_empty()),
                )
            }
        };
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| format!("{FORM}: {problem}"))?;
        let mut segments = path.split('/');
        let master = segments.next().unwrap_or_default();
        if master.is_empty() {
            return Err(format!("{FORM}: the master name is missing"));
        }
        let master = percent_decode(master)
            .ok_or_else(|| format!("{FORM}: the master name is not valid percent-encoding"))?;
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| format!("{FORM}: DB must be a database number, got {db:?}"))?,
        };
        if segments.next().is_some_and(|extra| !extra.is_empty()) {
            return Err(format!("{FORM}: nothing may follow /DB"));
        }
        Ok(SentinelTarget {
            sentinels,
            master,
            db,
            username,
            password,
        })
    }
}

/// `HOST:PORT`, or `[IPv6]:PORT`.
fn host_port(raw: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("sentinel {raw:?}: expected [IPV6]:PORT"))?;
        (host, port)
    } else {
        raw.rsplit_once(':')
            .filter(|(host, _)| !host.contains(':'))
            .ok_or_else(|| format!("sentinel {raw:?}: expected HOST:PORT"))?
    };
    if host.is_empty() {
        return Err(format!("sentinel {raw:?}: the host is missing"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("sentinel {raw:?}: the port must be 1-65535"))?;
    Ok((host.to_owned(), port))
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Never prints a password.
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The target with any password replaced by `***`.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Server(url) => {
                // redis://[user][:password]@host...: hide what sits between "://" and '@'.
                let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
                match rest
                    .split_once('/')
                    .map_or(rest, |(a, _)| a)
                    .rsplit_once('@')
                {
                    Some((userinfo, _)) if userinfo.contains(':') => {
                        let user = userinfo.split(':').next().unwrap_or_default();
                        let after = &rest[userinfo.len()..];
                        write!(f, "{scheme}://{user}:***{after}")
                    }
                    _ => f.write_str(url),
                }
            }
            RedisTarget::Sentinel(target) => {
                f.write_str(SENTINEL_SCHEME)?;
                if target.password.is_some() || target.username.is_some() {
                    write!(f, "{}:***@", target.username.as_deref().unwrap_or_default())?;
                }
                let hosts: Vec<String> = target
                    .sentinels
                    .iter()
                    .map(|(host, port)| {
                        if host.contains(':') {
                            format!("[{host}]:{port}")
                        } else {
                            format!("{host}:{port}")
                        }
                    })
                    .collect();
                write!(f, "{}/{}/{}", hosts.join(","), target.master, target.db)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(raw: &str) -> SentinelTarget {
        match RedisTarget::parse(raw) {
            Ok(RedisTarget::Sentinel(target)) => target,
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn plain_urls_are_kept_as_given() {
        for url in ["redis://127.0.0.1:6379", "rediss://cache.example:6380/2"] {
            assert_eq!(RedisTarget::parse(url), Ok(RedisTarget::Server(url.into())));
        }
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let target = sentinel("redis+sentinel://10.0.0.1:26379,sentinel-b:26380/mymaster");
        assert_eq!(
            target.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26379),
                ("sentinel-b".to_owned(), 26380)
            ]
        );
        assert_eq!(target.master, "mymaster");
        assert_eq!(
            (target.db, target.username, target.password),
            (0, None, None)
        );

        let target = sentinel("redis+sentinel://:s%40cret@[::1]:26379/cache/3");
        assert_eq!(target.sentinels, vec![("::1".to_owned(), 26379)]);
        assert_eq!(target.password.as_deref(), Some("s@cret"));
        assert_eq!(target.username, None);
        assert_eq!(target.db, 3);

        let target = sentinel("redis+sentinel://app:pw@h:1/m/");
        assert_eq!(target.username.as_deref(), Some("app"));
        assert_eq!(target.password.as_deref(), Some("pw"));
        assert_eq!(target.db, 0);
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        for (raw, says) in [
            ("http://h:1", "expected redis://"),
            ("redis+sentinel://h:26379", "master name is missing"),
            ("redis+sentinel://h:26379/", "master name is missing"),
            ("redis+sentinel://h/m", "HOST:PORT"),
            ("redis+sentinel://h:0/m", "1-65535"),
            ("redis+sentinel://h:1,/m", "HOST:PORT"),
            ("redis+sentinel://h:1/m/x", "database number"),
            ("redis+sentinel://h:1/m/1/2", "nothing may follow"),
            ("redis+sentinel://pw@h:1/m", ":PASSWORD"),
            ("redis+sentinel://:%zz@h:1/m", "percent-encoding"),
            ("redis+sentinel://h:1/m?x=1", "without query"),
        ] {
            let problem = RedisTarget::parse(raw).expect_err(raw);
            assert!(problem.contains(says), "{raw}: {problem}");
            assert!(!problem.contains("%zz"), "{problem}");
        }
    }

    #[test]
    fn passwords_never_print() {
        let target = RedisTarget::parse("redis+sentinel://:hunter2@h:1,g:2/m/1").unwrap();
        assert_eq!(target.to_string(), "redis+sentinel://:***@h:1,g:2/m/1");
        assert!(!format!("{target:?}").contains("hunter2"));
        let plain = RedisTarget::parse("redis://user:hunter2@h:6379/0").unwrap();
        assert_eq!(plain.to_string(), "redis://user:***@h:6379/0");
        let bare = RedisTarget::parse("redis://h:6379").unwrap();
        assert_eq!(bare.to_string(), "redis://h:6379");
    }
}
