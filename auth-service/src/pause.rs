//! Named points where a test can hold a request, to make a race between two requests happen in
//! exactly one order. Nothing is armed in production: passing a point costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// The points a request can be held at, named `<use case>:<step>`.
pub mod points {
    /// A refresh token passed its checks and is about to be rotated.
    pub const REFRESH_BEFORE_ROTATE: &str = "refresh:before-rotate";
    /// A refresh token was rotated; the new pair is about to be answered.
    pub const REFRESH_AFTER_ROTATE: &str = "refresh:after-rotate";
    /// A login checked the password and is about to read the user's generation and roles.
    pub const LOGIN_AFTER_PASSWORD: &str = "login:after-password";
    /// A login read the user's roles and is about to record its pair.
    pub const LOGIN_BEFORE_RECORD: &str = "login:before-record";
    /// A password change checked the current password and is about to end the sessions.
    pub const PASSWORD_BEFORE_CUTOFF: &str = "password:before-cutoff";
    /// A password change stored the new hash and is about to end the sessions again.
    pub const PASSWORD_AFTER_STORE: &str = "password:after-store";
}

#[derive(Default)]
pub struct PausePoints {
    armed: AtomicBool,
    gates: Mutex<HashMap<&'static str, Arc<Gate>>>,
}

/// One armed point: every request reaching it waits until the test releases it.
pub struct Gate {
    reached: Semaphore,
    released: Semaphore,
}

impl Gate {
    /// Waits until a request is held at this point.
    pub async fn reached(&self) {
        if let Ok(permit) = self.reached.acquire().await {
            permit.forget();
        }
    }

    /// Lets every held request (and every later one) go on.
    pub fn release(&self) {
        self.released.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl PausePoints {
    /// Arms a point (tests only): requests reaching it wait until [`Gate::release`].
    pub fn arm(&self, point: &'static str) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            reached: Semaphore::new(0),
            released: Semaphore::new(0),
        });
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(point, gate.clone());
        self.armed.store(true, Ordering::Release);
        gate
    }

    /// Called by the code at each point.
    pub async fn pass(&self, point: &'static str) {
        if !self.armed.load(Ordering::Acquire) {
            return;
        }
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(point)
            .cloned();
        if let Some(gate) = gate {
            gate.reached.add_permits(1);
            if let Ok(permit) = gate.released.acquire().await {
                // Keep the permit: the gate stays open for every later request too.
                drop(permit);
            }
        }
    }
}
