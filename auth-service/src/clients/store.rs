//! The clients table (service accounts), on the same pool and blocking path as the users table.

use diesel::prelude::*;
use shared::db::DbPool;
use shared::Scope;

use crate::error::AuthError;
use crate::schema::clients;

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
struct ClientRow {
    id: String,
    name: String,
    scopes: String,
    secret_hash: String,
    created_at: i64,
    updated_at: i64,
}

/// A service account as the rest of the service sees it.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub secret_hash: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl From<ClientRow> for Client {
    fn from(row: ClientRow) -> Self {
        Client {
            scopes: row.scopes.split(' ').filter_map(Scope::parse).collect(),
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
        }
    }
}

/// Scopes are stored as the space-separated list of RFC 6749 §3.3.
pub fn encode_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone)]
pub struct ClientStore {
    pool: DbPool,
}

impl ClientStore {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    pub async fn create(
        &self,
        name: String,
        scopes: Vec<Scope>,
        secret_hash: String,
    ) -> Result<Client, AuthError> {
        let now = chrono::Utc::now().timestamp_millis();
        let row = ClientRow {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            scopes: encode_scopes(&scopes),
            secret_hash,
            created_at: now,
            updated_at: now,
        };
        shared::db::run(&self.pool, move |conn| {
            diesel::insert_into(clients::table)
                .values(&row)
                .execute(conn)?;
            Ok(Client::from(row))
        })
        .await
    }

    pub async fn by_id(&self, id: String) -> Result<Option<Client>, AuthError> {
        shared::db::run(&self.pool, move |conn| {
            Ok(clients::table
                .find(id)
                .select(ClientRow::as_select())
                .first(conn)
                .optional()?
                .map(Client::from))
        })
        .await
    }

    /// Every client, oldest first (service accounts are few).
    pub async fn list(&self) -> Result<Vec<Client>, AuthError> {
        shared::db::run(&self.pool, move |conn| {
            Ok(clients::table
                .order(clients::id.asc())
                .select(ClientRow::as_select())
                .load(conn)?
                .into_iter()
                .map(Client::from)
                .collect())
        })
        .await
    }

    /// `false` when there was no such client.
    pub async fn delete(&self, id: String) -> Result<bool, AuthError> {
        shared::db::run(&self.pool, move |conn| {
            Ok(diesel::delete(clients::table.find(id)).execute(conn)? > 0)
        })
        .await
    }

    /// `false` when there was no such client.
    pub async fn set_secret_hash(
        &self,
        id: String,
        secret_hash: String,
    ) -> Result<bool, AuthError> {
        shared::db::run(&self.pool, move |conn| {
            Ok(diesel::update(clients::table.find(id))
                .set((
                    clients::secret_hash.eq(secret_hash),
                    clients::updated_at.eq(chrono::Utc::now().timestamp_millis()),
                ))
                .execute(conn)?
                > 0)
        })
        .await
    }
}
