//! The one state value every handler shares.

use std::sync::Arc;

use actix_web::web;
use shared::jwks_cache::JwksCache;
use shared::revocation::RevocationCheck;
use shared::Metrics;

use crate::store::BookStore;

pub struct AppState {
    pub books: BookStore,
    pub revocations: Arc<dyn RevocationCheck>,
    pub keys: Arc<JwksCache>,
    pub metrics: web::Data<Metrics>,
}
