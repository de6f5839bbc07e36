//! Revocations as other services see them: the JSON of `GET /revocations` and of each event of
//! `GET /revocations/stream` (docs/api.md, "Revocation feed"). Verifiers only ever see access
//! tokens, so each entry lives as long as an access token it matches could, not a refresh token.

use serde::{Deserialize, Serialize};

use super::{Revocation, RevocationEntry};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Published {
    /// One token, by `jti`.
    Token { jti: String, expires_at: i64 },
    /// Every token of one session (`sid`).
    Session { sid: String, expires_at: i64 },
    /// Every token of `sub` issued at or before `before` (Unix seconds, milliseconds in the
    /// fraction), except the one token `except_jti` when given.
    User {
        sub: String,
        before: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except_jti: Option<String>,
        expires_at: i64,
    },
}

impl Published {
    pub fn expires_at(&self) -> i64 {
        match self {
            Published::Token { expires_at, .. }
            | Published::Session { expires_at, .. }
            | Published::User { expires_at, .. } => *expires_at,
        }
    }

    /// The entry a verifier applies (a user entry is one cut-off, merged with the user's
    /// earlier ones by the store that applies it).
    pub fn into_entry(self) -> RevocationEntry {
        match self {
            Published::Token { jti, expires_at } => RevocationEntry {
                target: Revocation::Token { jti },
                expires_at,
            },
            Published::Session { sid, expires_at } => RevocationEntry {
                target: Revocation::Session { sid },
                expires_at,
            },
            Published::User {
                sub,
                before,
                except_jti,
                expires_at,
            } => RevocationEntry {
                target: Revocation::UserBefore {
                    sub,
                    before_ms: (before * 1000.0).round() as i64,
                    except_jti,
                    strict_before_ms: 0,
                },
                expires_at,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_is_the_documented_one() {
        let user = Published::User {
            sub: "42".into(),
            before: 1_764_325_678.123,
            except_jti: None,
            expires_at: 1_764_326_609,
        };
        let json = serde_json::to_string(&user).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"user","sub":"42","before":1764325678.123,"expires_at":1764326609}"#
        );
        match serde_json::from_str::<Published>(&json)
            .unwrap()
            .into_entry()
            .target
        {
            Revocation::UserBefore { before_ms, .. } => assert_eq!(before_ms, 1_764_325_678_123),
            other => panic!("{other:?}"),
        }
        let session: Published =
            serde_json::from_str(r#"{"kind":"session","sid":"s","expires_at":5}"#).unwrap();
        assert_eq!(session.expires_at(), 5);
        assert!(serde_json::from_str::<Published>(r#"{"kind":"family","fam":"s"}"#).is_err());
    }
}
