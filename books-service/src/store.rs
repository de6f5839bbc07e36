//! The books table. Writes that depend on a version are single conditional statements, so two
//! writers holding the same ETag can never both succeed.

use std::sync::Arc;

use diesel::prelude::*;
use shared::db::DbPool;

use crate::cache::{BookCache, Lookup};
use crate::domain::BookInput;
use crate::error::BooksError;
use crate::reads::PgReads;
use crate::schema::books;

diesel::define_sql_function! {
    /// SQL `lower()`, the same on PostgreSQL and SQLite for ASCII.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = books)]
pub struct BookRow {
    pub id: String,
    pub title: String,
    pub author: String,
    pub isbn: Option<String>,
    pub published_year: Option<i32>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

#[derive(AsChangeset)]
#[diesel(table_name = books, treat_none_as_null = true)]
struct BookChanges {
    title: String,
    author: String,
    isbn: Option<String>,
    published_year: Option<i32>,
    updated_at: i64,
}

impl BookChanges {
    fn from_input(input: BookInput, now: i64) -> Self {
        BookChanges {
            title: input.title.into_inner(),
            author: input.author.into_inner(),
            isbn: input.isbn.map(|i| i.into_inner()),
            published_year: input.published_year.map(|y| y.value()),
            updated_at: now,
        }
    }
}

/// Which rows `list` returns.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub limit: i64,
    /// Only ids after this one (the decoded cursor).
    pub after: Option<String>,
    /// Exact author, case-insensitive.
    pub author: Option<String>,
    /// Substring of the title, case-insensitive.
    pub q: Option<String>,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `%` and `_` in user input match themselves, not any character.
fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[derive(Clone)]
pub struct BookStore {
    pool: DbPool,
    /// Single-book reads on PostgreSQL without the blocking pool, when the URL allows it.
    reads: Option<Arc<PgReads>>,
    /// Books remembered across reads, and the notices every write sends (with Redis only).
    cache: Option<BookCache>,
}

impl BookStore {
    pub fn new(pool: DbPool) -> Self {
        Self {
            pool,
            reads: None,
            cache: None,
        }
    }

    /// `get` through `reads` instead of the pool.
    pub fn with_reads(self, reads: PgReads) -> Self {
        Self {
            reads: Some(Arc::new(reads)),
            ..self
        }
    }

    /// Reads through `cache`, and every write coordinated with the other instances' caches.
    pub fn with_cache(self, cache: BookCache) -> Self {
        Self {
            cache: Some(cache),
            ..self
        }
    }

    pub fn cache(&self) -> Option<&BookCache> {
        self.cache.as_ref()
    }

    /// Runs `write` to book `id` between the cache's two notices (see `cache`): no instance
    /// serves the book from its cache from before `write` starts until it is over.
    async fn coordinated<T, F>(&self, id: &str, write: F) -> Result<T, BooksError>
    where
        T: Send + 'static,
        F: FnOnce(&mut shared::db::PooledDb) -> Result<T, BooksError> + Send + 'static,
    {
        let Some(cache) = &self.cache else {
            return self.run(write).await;
        };
        let pending = Arc::new(cache.before_write(id).await?);
        let in_time = pending.clone();
        let result = self
            .run(move |conn| {
                if !in_time.may_start() {
                    return Err(BooksError::unavailable(
                        "the database",
                        "the write could not start in time after the caches were told",
                    ));
                }
                write(conn)
            })
            .await;
        cache.after_write(&pending).await;
        result
    }

    async fn run<T, F>(&self, f: F) -> Result<T, BooksError>
    where
        T: Send + 'static,
        F: FnOnce(&mut shared::db::PooledDb) -> Result<T, BooksError> + Send + 'static,
    {
        shared::db::run(&self.pool, f).await
    }

    pub async fn create(&self, input: BookInput) -> Result<BookRow, BooksError> {
        let now = now_millis();
        let changes = BookChanges::from_input(input, now);
        let row = BookRow {
            id: uuid::Uuid::now_v7().to_string(),
            title: changes.title,
            author: changes.author,
            isbn: changes.isbn,
            published_year: changes.published_year,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.run(move |conn| {
            diesel::insert_into(books::table)
                .values(&row)
                .execute(&mut **conn)?;
            Ok(row)
        })
        .await
    }

    pub async fn get(&self, id: String) -> Result<BookRow, BooksError> {
        let Some(cache) = &self.cache else {
            return self.read(id).await;
        };
        match cache.lookup(&id) {
            Lookup::Hit(row) => Ok(row),
            Lookup::Renew(row, ticket) => {
                // Served as it is; the read that keeps it cached happens off this request.
                let (store, cache) = (self.clone(), cache.clone());
                tokio::spawn(async move {
                    match store.read(id).await {
                        Ok(fresh) => cache.fill(ticket, &fresh),
                        Err(err) => tracing::debug!(
                            error = %shared::error::ErrorChain(&err),
                            "a cached book was not read again; it ends at its age"
                        ),
                    }
                });
                Ok(row)
            }
            Lookup::Miss(ticket) => {
                let row = self.read(id).await?;
                cache.fill(ticket, &row);
                Ok(row)
            }
            Lookup::Bypass => self.read(id).await,
        }
    }

    /// One book from the database.
    async fn read(&self, id: String) -> Result<BookRow, BooksError> {
        if let Some(reads) = &self.reads {
            return reads.get(&id).await;
        }
        self.run(move |conn| {
            books::table
                .find(id)
                .select(BookRow::as_select())
                .first(&mut **conn)
                .optional()?
                .ok_or(BooksError::NotFound)
        })
        .await
    }

    /// One page in id (= creation) order, and whether more rows follow.
    pub async fn list(&self, filter: ListFilter) -> Result<(Vec<BookRow>, bool), BooksError> {
        self.run(move |conn| {
            let mut query = books::table.select(BookRow::as_select()).into_boxed();
            if let Some(after) = filter.after {
                query = query.filter(books::id.gt(after));
            }
            if let Some(author) = filter.author {
                query = query.filter(lower(books::author).eq(author.to_lowercase()));
            }
            if let Some(q) = filter.q {
                query = query.filter(lower(books::title).like(like_pattern(&q)).escape('\\'));
            }
            let mut rows: Vec<BookRow> = query
                .order(books::id.asc())
                .limit(filter.limit + 1)
                .load(&mut **conn)?;
            let more = rows.len() as i64 > filter.limit;
            rows.truncate(filter.limit as usize);
            Ok((rows, more))
        })
        .await
    }

    /// Full replacement. With `expected_version`, succeeds only if the stored version still
    /// equals it, decided by the UPDATE itself.
    pub async fn replace(
        &self,
        id: String,
        expected_version: Option<i64>,
        input: BookInput,
    ) -> Result<BookRow, BooksError> {
        let changes = BookChanges::from_input(input, now_millis());
        self.coordinated(&id.clone(), move |conn| {
            conn.transaction(|conn| {
                let target = books::table.filter(books::id.eq(&id));
                let updated = match expected_version {
                    Some(version) => diesel::update(target.filter(books::version.eq(version)))
                        .set((&changes, books::version.eq(books::version + 1)))
                        .execute(conn)?,
                    None => diesel::update(target)
                        .set((&changes, books::version.eq(books::version + 1)))
                        .execute(conn)?,
                };
                if updated == 0 {
                    return Err(missing_or_changed(conn, &id)?);
                }
                Ok(books::table
                    .find(&id)
                    .select(BookRow::as_select())
                    .first(conn)?)
            })
        })
        .await
    }

    pub async fn delete(
        &self,
        id: String,
        expected_version: Option<i64>,
    ) -> Result<(), BooksError> {
        self.coordinated(&id.clone(), move |conn| {
            conn.transaction(|conn| {
                let target = books::table.filter(books::id.eq(&id));
                let deleted = match expected_version {
                    Some(version) => {
                        diesel::delete(target.filter(books::version.eq(version))).execute(conn)?
                    }
                    None => diesel::delete(target).execute(conn)?,
                };
                if deleted == 0 {
                    return Err(missing_or_changed(conn, &id)?);
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), BooksError> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || shared::db::ping(&pool))
            .await
            .map_err(|e| BooksError::unexpected("the readiness check", e))?
            .map_err(|e| BooksError::unavailable("the database", e))
    }
}

/// After a conditional write touched nothing: 404 if the book is gone, else 412.
fn missing_or_changed(
    conn: &mut shared::db::DbConnection,
    id: &str,
) -> Result<BooksError, BooksError> {
    let exists: i64 = books::table
        .filter(books::id.eq(id))
        .count()
        .get_result(conn)?;
    Ok(if exists == 0 {
        BooksError::NotFound
    } else {
        BooksError::PreconditionFailed
    })
}

impl shared::db::StoreError for BooksError {
    fn checkout_failed(err: diesel::r2d2::PoolError) -> Self {
        BooksError::unavailable("the database pool", err)
    }

    fn task_failed(err: tokio::task::JoinError) -> Self {
        BooksError::unexpected("a database task", err)
    }

    fn may_have_lost_connection(&self) -> bool {
        matches!(
            self,
            BooksError::Unavailable { .. } | BooksError::Unexpected { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Dune"), "%dune%");
        assert_eq!(like_pattern("100%_x"), "%100\\%\\_x%");
    }
}
