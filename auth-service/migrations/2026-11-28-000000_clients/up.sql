-- Service accounts (OAuth 2.0 client credentials). Portable SQL: PostgreSQL and SQLite.
-- secret_hash is HMAC-SHA256(server key, secret), base64url: the secret itself is never stored.
CREATE TABLE clients (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
