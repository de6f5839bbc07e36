mod helpers;

mod accounts;
mod discovery;
mod sessions;
mod throttling;
