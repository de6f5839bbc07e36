mod helpers;

mod accounts;
mod cookies;
mod discovery;
mod feed;
mod file_modes;
mod ledger;
mod oauth;
mod openapi;
mod races;
mod sessions;
mod throttling;
