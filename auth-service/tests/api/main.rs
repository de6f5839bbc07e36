mod helpers;

mod accounts;
mod discovery;
mod sessions;
