//! argon2id with OWASP's parameters, always on the blocking pool.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string of a random password, verified against when the user does not exist so that an
/// unknown username costs the same as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        hasher()
            .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes on the calling thread: call it from `spawn_blocking`.
pub fn hash(password: &Password) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

pub enum Verdict {
    Valid { needs_rehash: bool },
    Invalid,
}

/// Verifies against `stored`, or against the dummy hash when there is no user, so both paths do
/// one full argon2 computation. Call it from `spawn_blocking`.
pub fn verify(password: &str, stored: Option<&str>) -> Verdict {
    let phc = stored.unwrap_or_else(|| dummy_hash());
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verdict::Invalid;
    };
    // The parameters come from the PHC string itself, so old hashes still verify.
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    if ok && stored.is_some() {
        Verdict::Valid {
            needs_rehash: is_outdated(&parsed),
        }
    } else {
        Verdict::Invalid
    }
}

fn is_outdated(parsed: &PasswordHash<'_>) -> bool {
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(parsed) {
        Ok(p) => p.m_cost() < MEMORY_KIB || p.t_cost() < ITERATIONS || p.p_cost() < PARALLELISM,
        Err(_) => true,
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of one thread per core for argon2. More hashes in parallel than cores only add
/// memory (19 MiB each) and queueing inside the OS; and on tokio's large blocking pool each new
/// thread's malloc arena would keep its own 19 MiB, so memory grew with the number of threads
/// that had ever hashed (over 1 GB under a login flood, measured).
fn argon2_pool() -> &'static tokio::sync::mpsc::Sender<Job> {
    static POOL: OnceLock<tokio::sync::mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        keep_big_allocations_out_of_the_heap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Waiting jobs are small closures; the bound gives backpressure to the callers.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Job>(1024);
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for n in 0..cores {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start an argon2 worker thread");
            }
        }
        sender
    })
}

/// glibc raises its mmap threshold after the first large free, after which each 19 MiB argon2
/// block comes from (and stays in) a heap arena. A fixed threshold keeps those blocks in mmap, so
/// they go back to the OS as soon as a hash is done.
fn keep_big_allocations_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before the workers start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Password hashing runs at a lower CPU priority than request handling (nice +10 on this thread
/// only), so a login flood takes the CPU that reads leave unused instead of starving them.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the argon2 worker pool is gone")]
pub struct PoolGone;

/// Runs argon2 work on the dedicated pool and waits for it without blocking the async worker.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PoolGone> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    argon2_pool().send(job).await.map_err(|_| PoolGone)?;
    result.await.map_err(|_| PoolGone)
}

/// Warms the dummy hash so the first unknown-user login is not slower than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_with_owasp_parameters() {
        let phc = hash(&Password::parse("correct horse").unwrap()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(matches!(
            verify("correct horse", Some(&phc)),
            Verdict::Valid {
                needs_rehash: false
            }
        ));
        assert!(matches!(
            verify("wrong horse", Some(&phc)),
            Verdict::Invalid
        ));
        assert!(matches!(verify("correct horse", None), Verdict::Invalid));
    }

    #[test]
    fn weaker_hashes_verify_and_ask_for_a_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let phc = weak
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(matches!(
            verify("old password", Some(&phc)),
            Verdict::Valid { needs_rehash: true }
        ));
    }
}
