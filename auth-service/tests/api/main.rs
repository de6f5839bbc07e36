mod helpers;

mod accounts;
mod admin;
mod audit;
mod cookies;
mod discovery;
mod feed;
mod file_modes;
mod ledger;
mod mfa;
mod oauth;
mod openapi;
mod races;
mod replicas;
mod session_list;
mod sessions;
mod throttling;
