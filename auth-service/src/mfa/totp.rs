//! TOTP codes (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps, what every authenticator app
//! reads from an `otpauth://` URI. The arithmetic is `totp-rs`'s; what is decided here is the
//! window (the current step and one on either side) and the replay rule.
//!
//! Replay: a code is accepted once. [`TotpSecret::verify`] returns the time step the code matched;
//! the caller stores it as the user's last step and passes it back next time, and a code is
//! accepted only for a step after it (RFC 6238 section 5.2). That refuses the same code twice,
//! and also an older code of the window once a newer one was used. The store must update the
//! last step atomically with the check (compare-and-set on the old value), or two requests
//! carrying the same code at once could both pass.

use std::fmt;

use totp_rs::{Algorithm, Builder, Totp};

use crate::server_key;

/// The issuer shown by authenticator apps, before the account name.
pub const ISSUER: &str = "authbooks";
/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds in a time step.
pub const PERIOD: u64 = 30;
/// Steps accepted on either side of the current one (clock drift, slow typing).
pub const SKEW_STEPS: u64 = 1;
/// Bytes of a generated secret: 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;

/// A user's TOTP secret. No `Debug` or `Display` that shows it; it leaves only as base32 (to
/// the user, once, at enrolment) and sealed ([`super::Sealer`]) for storage.
#[derive(Clone)]
pub struct TotpSecret {
    totp: Totp,
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(***)")
    }
}

/// The time step `unix` (seconds) falls in.
pub fn step_at(unix: u64) -> u64 {
    unix / PERIOD
}

impl TotpSecret {
    /// A new secret of [`SECRET_BYTES`] from the OS generator.
    pub fn generate() -> Result<Self, String> {
        Self::from_bytes(&server_key::random_bytes::<SECRET_BYTES>()?)
    }

    /// From stored bytes (at least 16, as RFC 4226 requires).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let totp = builder(bytes)
            .build()
            .map_err(|e| format!("not a usable TOTP secret: {e}"))?;
        Ok(Self { totp })
    }

    /// The raw bytes, to seal for storage.
    pub fn as_bytes(&self) -> &[u8] {
        self.totp.secret().as_bytes()
    }

    /// RFC 4648 base32 without padding, as authenticator apps take it when typed in.
    pub fn to_base32(&self) -> String {
        self.totp.secret().to_base32()
    }

    /// The Key URI (`otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`),
    /// the QR code's content. Issuer and account are percent-encoded; neither may contain `:`.
    /// `algorithm`, `digits` and `period` are the defaults and may be left out, but are spelled
    /// out for apps that do not assume them.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, String> {
        let mut uri = builder(self.as_bytes())
            .with_issuer(Some(issuer))
            .with_account_name(account)
            .build()
            .and_then(|totp| totp.to_url())
            .map_err(|e| format!("cannot make the otpauth URI: {e}"))?;
        // totp-rs leaves out the parameters that have their default values.
        let query = uri
            .split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default();
        for (name, value) in [
            ("algorithm", "SHA1".to_owned()),
            ("digits", DIGITS.to_string()),
            ("period", PERIOD.to_string()),
        ] {
            if !query.split('&').any(|p| p.split('=').next() == Some(name)) {
                uri.push_str(&format!("&{name}={value}"));
            }
        }
        Ok(uri)
    }

    /// The code of the step `unix` falls in.
    pub fn code_at(&self, unix: u64) -> String {
        self.totp.generate(unix).to_string()
    }

    /// The step `code` is valid for, within one step of `now_unix`'s and after `last_used_step`
    /// (`None`: no code accepted yet, as at enrolment); `None` if there is no such step. `code`
    /// must be exactly 6 ASCII digits once surrounding whitespace and spaces are removed
    /// ("123 456", as apps display it, is accepted). The comparison is constant time, and every
    /// step of the window is tried whatever matches.
    pub fn verify(&self, code: &str, now_unix: u64, last_used_step: Option<u64>) -> Option<u64> {
        let code: String = code.trim().chars().filter(|c| *c != ' ').collect();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now = step_at(now_unix);
        let mut matched = None;
        for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
            if last_used_step.is_some_and(|last| step <= last) {
                continue;
            }
            // `check` with no skew compares `code` with the one step's code (constant time).
            let valid = step
                .checked_mul(PERIOD)
                .and_then(|time| self.totp.check(&code, time))
                .is_some();
            if valid && matched.is_none() {
                matched = Some(step);
            }
        }
        matched
    }
}

fn builder(secret: &[u8]) -> Builder {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_step_duration(PERIOD)
        .with_skew(0)
        .with_secret(secret.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    fn rfc() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SECRET).unwrap()
    }

    /// RFC 6238 appendix B, SHA-1 rows: the last 6 digits of the 8-digit values.
    const RFC_6238_SHA1: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        let secret = rfc();
        for (time, eight) in RFC_6238_SHA1 {
            let six = &eight[2..];
            assert_eq!(secret.code_at(time), six, "T = {time}");
            assert_eq!(
                secret.verify(six, time, None),
                Some(time / 30),
                "T = {time}"
            );
        }
    }

    /// An independent HOTP (RFC 4226 section 5.3) over aws-lc's HMAC-SHA-1, against ours.
    fn hotp_by_hand(secret: &[u8], step: u64) -> String {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
        let mac = hmac::sign(&key, &step.to_be_bytes());
        let mac = mac.as_ref();
        let offset = (mac[19] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            mac[offset] & 0x7f,
            mac[offset + 1],
            mac[offset + 2],
            mac[offset + 3],
        ]);
        format!("{:06}", binary % 1_000_000)
    }

    #[test]
    fn codes_agree_with_an_independent_hmac_sha1_computation() {
        for secret in [rfc(), TotpSecret::generate().unwrap()] {
            for time in [0, 29, 30, 59, 1_700_000_000, 1_700_000_029, 4_102_444_800] {
                let expected = hotp_by_hand(secret.as_bytes(), time / 30);
                assert_eq!(secret.code_at(time), expected, "T = {time}");
            }
        }
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = TotpSecret::generate().unwrap();
        let now = 1_700_000_010;
        let code = secret.code_at(now);
        let step = secret.verify(&code, now, None).unwrap();
        assert_eq!(step, now / 30);
        // Same code again, in the same step or the next.
        assert_eq!(secret.verify(&code, now, Some(step)), None);
        assert_eq!(secret.verify(&code, now + 30, Some(step)), None);
        // The next step's code is fine.
        let next = secret.code_at(now + 30);
        assert_eq!(secret.verify(&next, now + 30, Some(step)), Some(step + 1));
        // And once it was used, the previous step's (still in the window) is not.
        let previous = secret.code_at(now);
        assert_eq!(secret.verify(&previous, now + 30, Some(step + 1)), None);
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        // A fixed secret and time, so no chance collision between the window's codes.
        let secret = rfc();
        let now = 1_700_000_040;
        let step = now / 30;
        let window: Vec<String> = (step - 1..=step + 1)
            .map(|s| secret.code_at(s * 30))
            .collect();
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let then = (now as i64 + offset * 30) as u64;
            let code = secret.code_at(then);
            assert_eq!(window.contains(&code), accepted, "offset {offset}");
            let expected = accepted.then_some((step as i64 + offset) as u64);
            assert_eq!(secret.verify(&code, now, None), expected, "offset {offset}");
        }
    }

    #[test]
    fn only_six_ascii_digits_are_a_code() {
        let secret = rfc();
        let time = 59;
        assert_eq!(secret.verify(" 287082\n", time, None), Some(1));
        assert_eq!(secret.verify("287 082", time, None), Some(1));
        for bad in [
            "",
            "28708",
            "2870820",
            "94287082",
            "28708a",
            "+87082",
            "-87082",
            "２８７０８２",
            "287-082",
            "287\t082",
        ] {
            assert_eq!(secret.verify(bad, time, None), None, "{bad:?}");
        }
    }

    #[test]
    fn the_window_at_the_epoch_does_not_underflow() {
        let secret = rfc();
        let code = secret.code_at(0);
        assert_eq!(secret.verify(&code, 5, None), Some(0));
        assert_eq!(secret.verify(&code, 35, None), Some(0));
        assert_eq!(secret.verify("000000", u64::MAX, None), None);
    }

    #[test]
    fn the_uri_follows_the_key_uri_format() {
        let secret = rfc();
        assert_eq!(secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = secret.otpauth_uri(ISSUER, "alice.b-c_d").unwrap();
        assert_eq!(
            uri,
            "otpauth://totp/authbooks:alice.b-c_d?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=authbooks&algorithm=SHA1&digits=6&period=30"
        );
        let uri = secret.otpauth_uri("Auth Books", "a b").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Auth%20Books:a%20b?"),
            "{uri}"
        );
        assert!(uri.contains("&issuer=Auth%20Books"), "{uri}");
        assert!(secret.otpauth_uri(ISSUER, "a:b").is_err());
        assert!(secret.otpauth_uri("a:b", "alice").is_err());
        assert!(secret.otpauth_uri(ISSUER, "").is_err());
    }

    #[test]
    fn generated_secrets_are_160_bits_and_round_trip() {
        let a = TotpSecret::generate().unwrap();
        let b = TotpSecret::generate().unwrap();
        assert_eq!(a.as_bytes().len(), 20);
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.to_base32().len(), 32);
        let again = TotpSecret::from_bytes(a.as_bytes()).unwrap();
        assert_eq!(again.code_at(1_700_000_000), a.code_at(1_700_000_000));
        assert!(TotpSecret::from_bytes(&[1u8; 15]).is_err());
        assert_eq!(format!("{a:?}"), "TotpSecret(***)");
    }
}
