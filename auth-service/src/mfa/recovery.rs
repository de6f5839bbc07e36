//! Recovery codes: 10 per enrolment, each usable once, for a user without their authenticator.
//!
//! A code is 10 characters from Crockford's base32 alphabet in lower case (`0-9a-z` without `i`,
//! `l`, `o`, `u`), 50 bits from the OS generator, shown as `xxxxx-xxxxx`. Input is read
//! forgivingly: case, spaces and dashes do not matter, and `o`, `i`, `l` are read as `0`, `1`,
//! `1` (they never occur in a code).
//!
//! Stored as HMAC-SHA256 under the second-factor key (a subkey of it, [`super::Sealer`]), with the
//! user id in the message, as `v1.<key id>.<base64url(tag)>`. Why a fast keyed hash and not
//! argon2 (the argument of client secrets, [`crate::clients::SecretHasher`]): a password is
//! guessable, so its hash must be slow; a recovery code is 50 random bits, so no guess list finds
//! it, and online guesses are throttled by the login limits. The key means a copy of the database
//! alone cannot even test a guess offline, which slowness alone would not give for 50 bits.
//! Comparison is constant time (`hmac::verify`).
//!
//! The hash cannot be redone under a new key without the code, so a code stays under the key it
//! was made with: keep that key in `AUTH_MFA_PREVIOUS_KEYS` until the user has used or replaced
//! their codes (the key id in the stored value shows which rows still need it).

use std::fmt;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::sealed::{MfaKey, Sealer};
use crate::server_key;

/// Codes made at enrolment (or when the user asks for new ones, which replace the old).
pub const COUNT: usize = 10;
/// Characters in a code, 5 bits each.
pub const LENGTH: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const VERSION: &str = "v1";

/// One recovery code, normalised. No `Debug` or `Display` that shows it: [`Self::formatted`]
/// is for showing it to its user, once.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(***)")
    }
}

impl RecoveryCode {
    /// [`COUNT`] new codes, all different.
    pub fn generate_set() -> Result<Vec<Self>, String> {
        let mut codes: Vec<Self> = Vec::with_capacity(COUNT);
        while codes.len() < COUNT {
            let code = Self::generate()?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        Ok(codes)
    }

    fn generate() -> Result<Self, String> {
        let bytes = server_key::random_bytes::<LENGTH>()?;
        // 32 divides 256: taking 5 bits of each byte is uniform.
        let code = bytes
            .iter()
            .map(|b| ALPHABET[(b & 31) as usize] as char)
            .collect();
        Ok(Self(code))
    }

    /// What the user typed, if it can be a code at all (else there is nothing to look up).
    pub fn parse(input: &str) -> Option<Self> {
        let code: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            })
            .collect();
        (code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(Self(code))
    }

    /// `xxxxx-xxxxx`, to show the user.
    pub fn formatted(&self) -> String {
        format!("{}-{}", &self.0[..LENGTH / 2], &self.0[LENGTH / 2..])
    }
}

impl Sealer {
    /// What to store for `code`, of the user whose id is `user`: the HMAC under the current key.
    pub fn hash_recovery_code(&self, user: &[u8], code: &RecoveryCode) -> String {
        let key = self.current();
        let tag = hmac::sign(&key.recovery, &message(user, code));
        format!("{VERSION}.{}.{}", key.id, URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `stored` was made from `code` for `user`, under the current or a previous key.
    pub fn recovery_code_matches(&self, user: &[u8], code: &RecoveryCode, stored: &str) -> bool {
        let mut parts = stored.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let message = message(user, code);
        self.keys_named(id)
            .map(|(key, _)| verify(key, &message, &tag))
            .fold(false, |found, this| found | this)
    }

    /// Which of the user's unused codes (their stored values) `input` is, if any. Every stored
    /// value is checked, whichever matches. The caller deletes (or marks used) the matched one
    /// in the same statement that checks it is still unused, so a code works once even under
    /// concurrent requests.
    pub fn find_recovery_code<S: AsRef<str>>(
        &self,
        user: &[u8],
        input: &str,
        stored: &[S],
    ) -> Option<usize> {
        let code = RecoveryCode::parse(input)?;
        let mut found = None;
        for (i, value) in stored.iter().enumerate() {
            if self.recovery_code_matches(user, &code, value.as_ref()) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

fn verify(key: &MfaKey, message: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&key.recovery, message, tag).is_ok()
}

/// The user id, length-prefixed, then the code: a code hashed for one user does not match for
/// another.
fn message(user: &[u8], code: &RecoveryCode) -> Vec<u8> {
    let mut message = Vec::with_capacity(4 + user.len() + LENGTH);
    message.extend_from_slice(&(user.len() as u32).to_be_bytes());
    message.extend_from_slice(user);
    message.extend_from_slice(code.0.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &[u8] = b"user-1";

    #[test]
    fn a_set_is_ten_distinct_well_formed_codes() {
        let codes = RecoveryCode::generate_set().unwrap();
        assert_eq!(codes.len(), 10);
        for (i, code) in codes.iter().enumerate() {
            let shown = code.formatted();
            assert_eq!(shown.len(), 11);
            assert_eq!(&shown[5..6], "-");
            assert!(shown.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
            assert!(!codes[..i].contains(code));
            assert_eq!(RecoveryCode::parse(&shown).as_ref(), Some(code));
            assert_eq!(format!("{code:?}"), "RecoveryCode(***)");
        }
        // 10 characters of 5 bits: 50 bits per code.
        assert!(LENGTH * 5 >= 50 && ALPHABET.len() == 32);
    }

    #[test]
    fn input_is_normalised() {
        let code = RecoveryCode::parse("ab3de-fgh2k").unwrap();
        for typed in [
            "ab3defgh2k",
            "AB3DE-FGH2K",
            " ab3de fgh2k\n",
            "ab-3d-ef-gh-2k",
            "Ab3De - Fgh2K",
        ] {
            assert_eq!(
                RecoveryCode::parse(typed).as_ref(),
                Some(&code),
                "{typed:?}"
            );
        }
        // o, i, l are read as 0, 1, 1.
        assert_eq!(
            RecoveryCode::parse("OIL00-11111"),
            RecoveryCode::parse("01100-11111")
        );
        for bad in [
            "",
            "ab3de-fgh2",
            "ab3de-fgh2kk",
            "ab3de-fgh2u",
            "ab3de_fgh2k",
            "ab3dé-fgh2",
        ] {
            assert_eq!(RecoveryCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_hash_matches_its_code_user_and_key_only() {
        let sealer = Sealer::new(&[1; 32], &[]).unwrap();
        let codes = RecoveryCode::generate_set().unwrap();
        let stored: Vec<String> = codes
            .iter()
            .map(|c| sealer.hash_recovery_code(USER, c))
            .collect();
        assert!(stored[0].starts_with(&format!("v1.{}.", sealer.key_id())));
        assert!(!stored[0].contains(&codes[0].0));
        assert_eq!(stored[0], sealer.hash_recovery_code(USER, &codes[0]));
        for (i, code) in codes.iter().enumerate() {
            let typed = code.formatted().to_uppercase();
            assert_eq!(sealer.find_recovery_code(USER, &typed, &stored), Some(i));
            assert_eq!(sealer.find_recovery_code(b"user-2", &typed, &stored), None);
        }
        assert!(!sealer.recovery_code_matches(b"user-2", &codes[0], &stored[0]));
        assert_eq!(sealer.find_recovery_code(USER, "not a code", &stored), None);
        assert!(!sealer.recovery_code_matches(USER, &codes[0], "garbage"));
        assert!(!sealer.recovery_code_matches(USER, &codes[0], &stored[0].replacen("v1", "v2", 1)));

        // Once used (its row gone), it no longer matches.
        let used = 3;
        let left: Vec<&String> = stored
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != used)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            sealer.find_recovery_code(USER, &codes[used].formatted(), &left),
            None
        );

        // After rotation, the codes made under the previous key still match; under an unrelated
        // key, none does.
        let rotated = Sealer::new(&[2; 32], &[&[1; 32]]).unwrap();
        assert_eq!(
            rotated.find_recovery_code(USER, &codes[5].formatted(), &stored),
            Some(5)
        );
        let unrelated = Sealer::new(&[2; 32], &[]).unwrap();
        assert_eq!(
            unrelated.find_recovery_code(USER, &codes[5].formatted(), &stored),
            None
        );
    }

    #[test]
    fn the_recovery_subkey_is_not_the_key_itself() {
        // HMAC under the raw key gives something else: the subkey is derived.
        let raw = [1u8; 32];
        let sealer = Sealer::new(&raw, &[]).unwrap();
        let code = RecoveryCode::parse("00000-00000").unwrap();
        let ours = sealer.hash_recovery_code(USER, &code);
        let direct = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &raw),
            &message(USER, &code),
        );
        assert!(!ours.ends_with(&URL_SAFE_NO_PAD.encode(direct)));
    }
}
