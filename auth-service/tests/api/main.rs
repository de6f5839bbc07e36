mod helpers;

mod accounts;
mod cookies;
mod discovery;
mod file_modes;
mod openapi;
mod sessions;
mod throttling;
