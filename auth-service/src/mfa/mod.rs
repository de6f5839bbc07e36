//! Second factor: TOTP (RFC 6238) and recovery codes. Pure logic, no storage and no routes.
//!
//! - [`totp`]: secrets, codes, the `otpauth://` URI, and the check with its replay rule (the
//!   caller keeps the user's last accepted step).
//! - [`qr`]: the URI as an SVG QR code.
//! - [`sealed`]: the secret encrypted at rest ([`Sealer`], keys from `AUTH_MFA_KEY` and
//!   `AUTH_MFA_PREVIOUS_KEYS` or the keys directory).
//! - [`recovery`]: one-use recovery codes, stored as keyed hashes under the same keys.
//!
//! docs/security.md, "Second factor", says how these fit together.

pub mod qr;
pub mod recovery;
pub mod sealed;
pub mod totp;

pub use recovery::RecoveryCode;
pub use sealed::{SealError, Sealer};
pub use totp::TotpSecret;
