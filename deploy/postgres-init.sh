#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume
# (/docker-entrypoint-initdb.d). Each service gets its own database and its own login role that
# owns it: both services run diesel migrations with the default __diesel_schema_migrations
# table, so they cannot share a database, and neither needs the superuser.
# No `set -eu`: the image sources a script that is not executable, and those options would leak
# into its entrypoint. psql's exit status is the script's.

: "${AUTH_DB_PASSWORD:?AUTH_DB_PASSWORD is required}"
: "${BOOKS_DB_PASSWORD:?BOOKS_DB_PASSWORD is required}"

# psql substitutes :'var' as a quoted literal, so a password is never spliced into SQL text.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v auth_password="$AUTH_DB_PASSWORD" -v books_password="$BOOKS_DB_PASSWORD" <<'SQL'
CREATE ROLE auth LOGIN PASSWORD :'auth_password';
CREATE DATABASE auth OWNER auth;
REVOKE ALL ON DATABASE auth FROM PUBLIC;
CREATE ROLE books LOGIN PASSWORD :'books_password';
CREATE DATABASE books OWNER books;
REVOKE ALL ON DATABASE books FROM PUBLIC;
SQL
