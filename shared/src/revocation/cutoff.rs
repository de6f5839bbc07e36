//! Per-user cut-offs and the one rule for combining them.
//!
//! Two writers can race: an administrator demotes a user (every token of hers dies) while her own
//! password change is in flight (every token dies *except the one that asked*). If the second
//! write simply replaced the first, the excepted token would survive the demotion with its old
//! roles. So a cut-off is kept as two parts — a strict part with no exception and an excepting
//! part — and combining two cut-offs kills exactly the union of what each kills: cut-offs only
//! move forward and an exception never widens an earlier cut-off. Memory, the Redis script and
//! the books-service replica all apply this same rule.

use super::Revocation;

/// A user's combined cut-off: a token issued at `issued_ms` with id `jti` is dead when
/// `issued_ms <= strict_before_ms`, or when `issued_ms <= before_ms` and `jti != except_jti`.
/// Invariant: `strict_before_ms <= before_ms`, and `except_jti` is `None` when they are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCutoff {
    pub strict_before_ms: i64,
    pub before_ms: i64,
    pub except_jti: Option<String>,
}

impl UserCutoff {
    /// A single cut-off at `before_ms`, sparing `except_jti` if given.
    pub fn new(before_ms: i64, except_jti: Option<String>) -> Self {
        Self {
            strict_before_ms: if except_jti.is_some() { 0 } else { before_ms },
            before_ms,
            except_jti,
        }
        .normalised()
    }

    /// The cut-off a [`Revocation::UserBefore`] describes.
    pub fn of(revocation: &Revocation) -> Option<Self> {
        match revocation {
            Revocation::UserBefore {
                before_ms,
                except_jti,
                strict_before_ms,
                ..
            } => Some(
                Self {
                    strict_before_ms: *strict_before_ms,
                    before_ms: *before_ms,
                    except_jti: except_jti.clone(),
                }
                .normalised(),
            ),
            _ => None,
        }
    }

    pub fn into_revocation(self, sub: String) -> Revocation {
        Revocation::UserBefore {
            sub,
            before_ms: self.before_ms,
            except_jti: self.except_jti,
            strict_before_ms: if self.strict_before_ms == self.before_ms {
                0
            } else {
                self.strict_before_ms
            },
        }
    }

    pub fn kills(&self, issued_ms: i64, jti: &str) -> bool {
        issued_ms <= self.strict_before_ms
            || (issued_ms <= self.before_ms && self.except_jti.as_deref() != Some(jti))
    }

    /// The cut-off that kills exactly what `self` or `other` kills.
    pub fn merge(&self, other: &UserCutoff) -> UserCutoff {
        let strict = self.strict_before_ms.max(other.strict_before_ms);
        let merged = if self.except_jti == other.except_jti {
            UserCutoff {
                strict_before_ms: strict,
                before_ms: self.before_ms.max(other.before_ms),
                except_jti: self.except_jti.clone(),
            }
        } else {
            // Different exceptions: below the earlier of the two, every token is killed by at
            // least one of them; above it, only the later one's rule applies.
            let (earlier, later) = if self.before_ms <= other.before_ms {
                (self, other)
            } else {
                (other, self)
            };
            UserCutoff {
                strict_before_ms: strict.max(earlier.before_ms),
                before_ms: later.before_ms,
                except_jti: later.except_jti.clone(),
            }
        };
        merged.normalised()
    }

    fn normalised(mut self) -> Self {
        if self.except_jti.is_none() {
            self.before_ms = self.before_ms.max(self.strict_before_ms);
        }
        if self.strict_before_ms >= self.before_ms {
            self.before_ms = self.strict_before_ms;
            self.except_jti = None;
        }
        if self.except_jti.is_none() {
            self.strict_before_ms = self.before_ms;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spared(before: i64, jti: &str) -> UserCutoff {
        UserCutoff::new(before, Some(jti.to_owned()))
    }

    fn all(before: i64) -> UserCutoff {
        UserCutoff::new(before, None)
    }

    /// Every (issued, jti) the union of the two cut-offs kills, the merge kills, and nothing else.
    fn assert_union(a: &UserCutoff, b: &UserCutoff) {
        for merged in [a.merge(b), b.merge(a)] {
            for issued in 0..=40 {
                for jti in ["j", "k", "x"] {
                    assert_eq!(
                        merged.kills(issued, jti),
                        a.kills(issued, jti) || b.kills(issued, jti),
                        "{a:?} + {b:?} = {merged:?} at ({issued}, {jti})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_later_password_change_does_not_spare_its_token_from_an_earlier_demotion() {
        let demotion = all(10);
        let password_change = spared(20, "j");
        let merged = demotion.merge(&password_change);
        // Token j was issued at 5, before the demotion: dead whatever the order of writes.
        assert!(merged.kills(5, "j"));
        assert!(password_change.merge(&demotion).kills(5, "j"));
        // A token issued between the two is spared only if it is the one that asked.
        assert!(!merged.kills(15, "j"));
        assert!(merged.kills(15, "k"));
    }

    #[test]
    fn merging_kills_exactly_the_union() {
        let cases = [
            all(10),
            all(20),
            spared(10, "j"),
            spared(20, "j"),
            spared(20, "k"),
            spared(30, "x"),
            UserCutoff {
                strict_before_ms: 10,
                before_ms: 25,
                except_jti: Some("k".into()),
            },
        ];
        for a in &cases {
            for b in &cases {
                assert_union(a, b);
            }
        }
    }

    #[test]
    fn cutoffs_only_move_forward() {
        let later = all(20);
        assert_eq!(later.merge(&all(10)), later);
        assert_eq!(all(10).merge(&later), later);
    }

    #[test]
    fn round_trips_through_the_wire_form() {
        let cut = all(10).merge(&spared(20, "j"));
        assert_eq!(
            UserCutoff::of(&cut.clone().into_revocation("7".into())),
            Some(cut)
        );
    }
}
