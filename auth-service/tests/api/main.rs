mod helpers;

mod accounts;
mod cookies;
mod discovery;
mod sessions;
mod throttling;
