-- Accounts people expect: disabled accounts, session records, TOTP, recovery codes, pending
-- second-factor logins and the audit trail. Portable SQL: runs unchanged on PostgreSQL and SQLite.
-- Times are milliseconds since the Unix epoch, as in the other tables.

-- totp_secret: the confirmed TOTP secret, sealed (AES-256-GCM, see src/mfa); NULL without MFA.
-- totp_pending: a secret being enrolled, sealed, until confirmed with a code.
-- totp_last_step: the newest RFC 6238 time step accepted; a code of that step or older is a replay.
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;

-- One row per login (the tokens' `sid`); ended_at is set when it is ended, then pruned.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT NOT NULL,
    ip TEXT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

-- Recovery codes, HMAC-SHA256 under the server's MFA key (never the code itself).
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A login that passed its password and waits for the second factor. id is the SHA-256 of the
-- mfa_token given to the client; csrf is set for a cookie login.
CREATE TABLE mfa_challenges (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    csrf TEXT,
    attempts INTEGER NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The audit trail; id is a UUIDv7, so ordering by id is ordering by time.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    subject TEXT,
    ip TEXT,
    user_agent TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_kind ON audit_events (kind, id);
