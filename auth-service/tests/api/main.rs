mod helpers;

mod accounts;
mod cookies;
mod discovery;
mod file_modes;
mod ledger;
mod openapi;
mod races;
mod sessions;
mod throttling;
