//! The strength rule of a new password: registration, password change and the bootstrap admin.
//! Login never applies it (a stored password is only checked against its hash).
//!
//! zxcvbn estimates how many guesses a password takes, knowing common passwords, dictionary
//! words, names, keyboard patterns, repeats, sequences, dates and the username; its score (0-4)
//! must reach the configured minimum (`AUTH_PASSWORD_MIN_SCORE`, 3 by default: more than 10^8
//! guesses, see docs/security.md). A refusal carries the estimator's own feedback.

use std::fmt;

use zxcvbn::feedback::Suggestion;
use zxcvbn::{Entropy, Score};

use crate::domain::Password;
use crate::error::AuthError;
use crate::login::argon2;
use crate::password;

/// The weakest zxcvbn score a new password may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_score: Score,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_score: Score::Three,
        }
    }
}

/// Why a new password was refused; its `Display` is the problem shown to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The password contains the username (case-insensitive).
    ContainsUsername,
    /// The estimate is below the minimum; `feedback` is zxcvbn's warning and suggestions.
    TooWeak {
        score: u8,
        needed: u8,
        feedback: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ContainsUsername => f.write_str("must not contain the username"),
            Refusal::TooWeak {
                score,
                needed,
                feedback,
            } => write!(
                f,
                "too weak (score {score} of 4, needs {needed}): {feedback}"
            ),
        }
    }
}

impl PasswordPolicy {
    /// The default minimum score (zxcvbn's own advice: "any score less than 3 should be
    /// considered too weak").
    pub const DEFAULT_MIN_SCORE: u8 = 3;

    /// A policy requiring `min_score` (0-4; 0 leaves only the username rule).
    pub fn with_min_score(min_score: u8) -> Result<Self, &'static str> {
        Score::try_from(min_score)
            .map(|min_score| PasswordPolicy { min_score })
            .map_err(|_| "must be a zxcvbn score from 0 to 4")
    }

    pub fn min_score(&self) -> u8 {
        self.min_score.into()
    }

    /// Checks a new password of `username`. It takes a [`Password`], so over-long input (more
    /// than 128 characters) was refused by `Password::parse` before the estimator could see it.
    ///
    /// Runs on the calling thread and takes milliseconds: measured on 2 cores, 0.1-0.3 ms for a
    /// passphrase, up to 7 ms for 100 characters and more (zxcvbn looks at the first 100 only),
    /// 15 ms on the very first call (its dictionaries are built then). Too long for an async
    /// worker: call it on the argon2 pool ([`hash_new_password`]) or a blocking thread.
    pub fn check(&self, username: &str, password: &Password) -> Result<(), Refusal> {
        let username = username.to_lowercase();
        let candidate = password.expose();
        if !username.is_empty() && candidate.to_lowercase().contains(&username) {
            return Err(Refusal::ContainsUsername);
        }
        let estimate = zxcvbn::zxcvbn(candidate, &[username.as_str()]);
        if estimate.score() >= self.min_score {
            return Ok(());
        }
        Err(Refusal::TooWeak {
            score: estimate.score().into(),
            needed: self.min_score(),
            feedback: feedback(&estimate),
        })
    }
}

/// zxcvbn's warning and suggestions as one text. It gives none for a score of 3 or more, which
/// a minimum of 4 can still refuse: then its usual advice.
fn feedback(estimate: &Entropy) -> String {
    let text = estimate
        .feedback()
        .map(|feedback| feedback.to_string().trim().to_owned())
        .unwrap_or_default();
    if text.is_empty() {
        Suggestion::AddAnotherWordOrTwo.to_string()
    } else {
        text
    }
}

/// Checks a new password against `policy` and hashes it, in one job on the argon2 pool: the
/// estimate stays off the async workers and costs no second wait in the pool's queue. A refusal
/// is `422 validation_failed` naming the request's `field`.
pub async fn hash_new_password(
    policy: PasswordPolicy,
    username: &str,
    password: Password,
    field: &'static str,
) -> Result<String, AuthError> {
    let username = username.to_owned();
    argon2(move || {
        policy
            .check(&username, &password)
            .map_err(|refusal| AuthError::field(field, &refusal.to_string()))?;
        password::hash(&password).map_err(|e| AuthError::unexpected("hashing a password", e))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(raw: &str) -> Password {
        Password::parse(raw).expect("8-128 characters")
    }

    fn check(policy: PasswordPolicy, username: &str, raw: &str) -> Result<(), Refusal> {
        policy.check(username, &password(raw))
    }

    #[test]
    fn a_common_password_is_refused_with_the_estimators_feedback() {
        let refusal = check(PasswordPolicy::default(), "alice", "password1").unwrap_err();
        let Refusal::TooWeak {
            score,
            needed,
            feedback,
        } = &refusal
        else {
            panic!("{refusal:?}");
        };
        assert!(*score < 3, "{refusal}");
        assert_eq!(*needed, 3);
        assert!(feedback.contains("common password"), "{feedback}");
        assert!(
            refusal
                .to_string()
                .starts_with(&format!("too weak (score {score} of 4, needs 3): ")),
            "{refusal}"
        );
        // Repeats and keyboard rows are weak too, each with its own advice.
        for weak in ["abcabcabcabc", "qwertyuiop", "aaaaaaaaaaaa", "12345678"] {
            let refusal = check(PasswordPolicy::default(), "alice", weak).unwrap_err();
            assert!(matches!(refusal, Refusal::TooWeak { .. }), "{weak}");
            assert!(!refusal.to_string().ends_with(": "), "{refusal}");
        }
    }

    #[test]
    fn a_password_containing_the_username_is_refused_whatever_its_case() {
        let strong_otherwise = "Zanzibar-quokka-Heliotrope-77";
        assert_eq!(
            check(PasswordPolicy::default(), "bob", strong_otherwise),
            Ok(())
        );
        for raw in [
            "bob-Zanzibar-quokka-Heliotrope",
            "Zanzibar-BOB-quokka-Heliotrope",
            "Zanzibar-quokka-Heliotrope-Bob",
        ] {
            let refusal = check(PasswordPolicy::default(), "Bob", raw).unwrap_err();
            assert_eq!(refusal, Refusal::ContainsUsername, "{raw}");
            assert_eq!(refusal.to_string(), "must not contain the username");
        }
        // Even with no minimum score.
        let anything = PasswordPolicy::with_min_score(0).unwrap();
        assert_eq!(
            check(anything, "carol", "carol123"),
            Err(Refusal::ContainsUsername)
        );
    }

    #[test]
    fn the_username_counts_as_a_known_word() {
        // Not contained as typed (a digit for the "l"), but zxcvbn is told the username: 3 for
        // anyone else, 1 for the user of that name.
        let policy = PasswordPolicy::default();
        assert_eq!(check(policy, "alice", "Przemys1aw!"), Ok(()));
        let refusal = check(policy, "przemyslaw", "Przemys1aw!").unwrap_err();
        assert!(
            matches!(refusal, Refusal::TooWeak { score: 1, .. }),
            "{refusal}"
        );
    }

    #[test]
    fn over_long_input_never_reaches_the_estimator() {
        // The policy only takes a `Password`, and none is built from more than 128 characters,
        // however long the input: no estimate is ever made of it.
        let huge = "correct-Horse-battery-staple-".repeat(10_000);
        let started = std::time::Instant::now();
        assert_eq!(
            Password::parse(&huge).unwrap_err(),
            "must be 8-128 characters"
        );
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        // At the longest allowed, the estimate stays bounded (zxcvbn reads 100 characters).
        let longest = password(&"ab1-".repeat(32));
        let started = std::time::Instant::now();
        let _ = PasswordPolicy::default().check("alice", &longest);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn strong_passwords_are_accepted() {
        for raw in [
            "correct-Horse-battery-staple-42",
            "correct horse battery",
            "a new passphrase",
            "8c98a7f99c3c45c701239e071aabbade",
        ] {
            assert_eq!(
                check(PasswordPolicy::default(), "alice", raw),
                Ok(()),
                "{raw}"
            );
        }
    }

    #[test]
    fn the_minimum_score_is_configurable() {
        assert_eq!(PasswordPolicy::default().min_score(), 3);
        assert_eq!(
            PasswordPolicy::default(),
            PasswordPolicy::with_min_score(PasswordPolicy::DEFAULT_MIN_SCORE).unwrap()
        );
        assert!(PasswordPolicy::with_min_score(5).is_err());
        // "bootstrap-password" scores 3: enough by default, not for 4, which gives advice even
        // though zxcvbn has none for a score of 3.
        let strictest = PasswordPolicy::with_min_score(4).unwrap();
        let refusal = check(strictest, "root", "bootstrap-password").unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "too weak (score 3 of 4, needs 4): Add another word or two. Uncommon words are better."
        );
        assert_eq!(
            check(PasswordPolicy::default(), "root", "bootstrap-password"),
            Ok(())
        );
        // 0 accepts the most common password there is (the username rule still holds).
        let anything = PasswordPolicy::with_min_score(0).unwrap();
        assert_eq!(check(anything, "alice", "password"), Ok(()));
        assert!(check(PasswordPolicy::default(), "alice", "password").is_err());
    }

    #[tokio::test]
    async fn a_refusal_on_the_pool_is_a_422_on_the_named_field() {
        let err = hash_new_password(
            PasswordPolicy::default(),
            "alice",
            password("password1"),
            "new_password",
        )
        .await
        .unwrap_err();
        let AuthError::Validation(fields) = err else {
            panic!("{err:?}");
        };
        assert!(fields["new_password"].starts_with("too weak"), "{fields:?}");
        // (An accepted password is hashed in the same job: the API tests show it; hashing here
        // would hold argon2 memory on the pool while `password`'s test waits for it to go.)
    }
}
