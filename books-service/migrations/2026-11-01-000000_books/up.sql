-- Portable SQL: runs unchanged on PostgreSQL and SQLite. Ids are UUIDv7 text, so ordering by id
-- is ordering by creation time (the pagination cursor relies on it).
CREATE TABLE books (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    author TEXT NOT NULL,
    isbn TEXT,
    published_year INTEGER,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX books_isbn_key ON books (isbn);
CREATE INDEX books_author_idx ON books (author);
