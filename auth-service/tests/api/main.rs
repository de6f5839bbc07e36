mod helpers;

mod accounts;
mod cookies;
mod discovery;
mod openapi;
mod sessions;
mod throttling;
