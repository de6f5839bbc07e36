DROP TABLE audit_events;
DROP TABLE mfa_challenges;
DROP TABLE recovery_codes;
DROP TABLE sessions;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_pending;
ALTER TABLE users DROP COLUMN totp_secret;
ALTER TABLE users DROP COLUMN disabled;
