//! argon2id with OWASP's parameters, always on the blocking pool.

use std::cell::Cell;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::cpu_group::CpuGroup;
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
    DUMMY.get_or_init(|| hash_bytes(uuid::Uuid::new_v4().as_bytes()).unwrap_or_default())
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes on the calling thread: call it through [`run`].
pub fn hash(password: &Password) -> Result<String, HashError> {
    hash_bytes(password.expose().as_bytes())
}

fn hash_bytes(password: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let argon2 = hasher();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| HashError(e.to_string()))?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon2, password, salt_bytes, &mut output).map_err(|e| HashError(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|e| HashError(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|e| HashError(e.to_string()))?),
    };
    Ok(phc.to_string())
}

pub enum Verdict {
    Valid { needs_rehash: bool },
    Invalid,
}

/// Verifies against `stored`, or against the dummy hash when there is no user, so both paths do
/// one full argon2 computation. Call it through [`run`].
pub fn verify(password: &str, stored: Option<&str>) -> Verdict {
    let phc = stored.unwrap_or_else(|| dummy_hash());
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verdict::Invalid;
    };
    if matches_phc(password.as_bytes(), &parsed) && stored.is_some() {
        Verdict::Valid {
            needs_rehash: is_outdated(&parsed),
        }
    } else {
        Verdict::Invalid
    }
}

/// Recomputes the hash with the algorithm, version and parameters of the PHC string itself (so
/// old hashes still verify) and compares in constant time (`Output`'s `PartialEq`).
fn matches_phc(password: &[u8], parsed: &PasswordHash<'_>) -> bool {
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut output = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if compute(&argon2, password, salt_bytes, &mut output).is_err() {
        return false;
    }
    Output::new(&output).is_ok_and(|actual| actual == expected)
}

thread_local! {
    static REUSES_MEMORY: Cell<bool> = const { Cell::new(false) };
}

/// argon2's working memory (19 MiB per hash) kept between hashes on the pool threads. A fresh
/// allocation each time cost ~40 % of a login's CPU in page faults, kernel page zeroing and
/// unmapping (perf, `BENCH_PERF=1 bash deploy/bench.sh`). What it holds after a hash reveals no
/// more than the stored hash does. Released after the pool has been idle for [`KEEP_MEMORY_FOR`].
static SPARE_MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// How long idle workers keep their argon2 memory: long enough to span the gaps in a stream of
/// logins, short enough that an idle service returns to its idle footprint.
const KEEP_MEMORY_FOR: Duration = Duration::from_secs(2);

/// This thread hashes often: keep its argon2 memory for the next hash (pool workers, benches).
pub fn reuse_memory_on_this_thread() {
    REUSES_MEMORY.set(true);
}

fn release_spare_memory() {
    spare_memory().clear();
}

fn spare_memory() -> std::sync::MutexGuard<'static, Vec<Vec<Block>>> {
    SPARE_MEMORY.lock().unwrap_or_else(|e| e.into_inner())
}

fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let blocks = argon2.params().block_count();
    if !REUSES_MEMORY.get() {
        let mut memory = vec![Block::default(); blocks];
        return argon2.hash_password_into_with_memory(password, salt, out, &mut memory);
    }
    let mut memory = spare_memory().pop().unwrap_or_default();
    if memory.len() < blocks {
        // The first pass overwrites every block, so stale contents need no clearing.
        memory.resize(blocks, Block::default());
    }
    let result = argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks]);
    spare_memory().push(memory);
    result
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

/// Hashes queued or running, at most: the callers past this wait (backpressure).
const MAX_WAITING: usize = 1024;

struct Pool {
    jobs: std::sync::mpsc::Sender<Job>,
    waiting: tokio::sync::Semaphore,
}

/// A fixed pool of one thread per core for argon2. More hashes in parallel than cores only add
/// memory (19 MiB each) and queueing inside the OS; and on tokio's large blocking pool each new
/// thread's malloc arena would keep its own 19 MiB, so memory grew with the number of threads
/// that had ever hashed (over 1 GB under a login flood, measured).
fn argon2_pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        keep_big_allocations_out_of_the_heap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for n in 0..cores {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    if let Some(group) = HASHING_CPU_GROUP.get() {
                        if let Err(err) = group.admit_this_thread() {
                            tracing::error!(
                                error = %err,
                                group = %group.dir.display(),
                                "could not move an argon2 thread into AUTH_ARGON2_CGROUP"
                            );
                        }
                    }
                    reuse_memory_on_this_thread();
                    loop {
                        let next = receiver
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .recv_timeout(KEEP_MEMORY_FOR);
                        match next {
                            Ok(job) => job(),
                            Err(RecvTimeoutError::Timeout) => release_spare_memory(),
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start an argon2 worker thread");
            }
        }
        Pool {
            jobs: sender,
            waiting: tokio::sync::Semaphore::new(MAX_WAITING),
        }
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

/// Password hashing only gets CPU time that request handling leaves (SCHED_IDLE on this thread
/// only), so a login flood cannot take the CPU from reads; logins still progress beside a read
/// load (~40/s beside ~7 600 GET/s on 2 cores, `deploy/bench.sh`). Falls back to nice +19 where
/// the policy is refused.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority unchanged.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}

/// A CPU cgroup for the hashing threads (`AUTH_ARGON2_CGROUP`), set once at start.
static HASHING_CPU_GROUP: OnceLock<CpuGroup> = OnceLock::new();

/// Call before the first hash: the hashing threads join `group` as they start.
pub fn hash_in_cpu_group(group: CpuGroup) {
    let _ = HASHING_CPU_GROUP.set(group);
}

#[derive(Debug, thiserror::Error)]
#[error("the argon2 worker pool is gone")]
pub struct PoolGone;

/// Runs argon2 work on the dedicated pool and waits for it without blocking the async worker.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PoolGone> {
    let pool = argon2_pool();
    let place = pool.waiting.acquire().await.map_err(|_| PoolGone)?;
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    pool.jobs.send(job).map_err(|_| PoolGone)?;
    let outcome = result.await.map_err(|_| PoolGone);
    drop(place);
    outcome
}

/// Call once at start, before any hashing: fixes the allocator's mmap threshold so hashes made
/// outside the pool give their memory back (idle RSS after a start with a bootstrap admin was 34 MB,
/// two 19 MiB blocks kept by the heap), then warms the dummy hash so the first unknown-user login
/// is not slower than the rest.
pub fn warm_up() {
    keep_big_allocations_out_of_the_heap();
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

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
    fn reused_memory_agrees_with_the_reference_implementation() {
        let reference = hasher()
            .hash_password(
                b"correct horse",
                &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
            )
            .unwrap()
            .to_string();
        std::thread::spawn(move || {
            reuse_memory_on_this_thread();
            // Each computation starts from the previous one's leftover blocks.
            let ours = hash(&Password::parse("battery staple").unwrap()).unwrap();
            for _ in 0..2 {
                assert!(matches!(
                    verify("correct horse", Some(&reference)),
                    Verdict::Valid { .. }
                ));
                assert!(matches!(
                    verify("correct horsf", Some(&reference)),
                    Verdict::Invalid
                ));
            }
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(Argon2::default()
                .verify_password(b"battery staple", &parsed)
                .is_ok());
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn the_pool_keeps_argon2_memory_while_busy_and_returns_it_when_idle() {
        let password = Password::parse("correct horse").unwrap();
        let phc = run(move || hash(&password)).await.unwrap().unwrap();
        assert!(!spare_memory().is_empty(), "kept for the next hash");
        assert!(matches!(
            run(move || verify("correct horse", Some(&phc)))
                .await
                .unwrap(),
            Verdict::Valid { .. }
        ));
        tokio::time::sleep(KEEP_MEMORY_FOR * 2).await;
        assert!(spare_memory().is_empty(), "given back after idling");
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
