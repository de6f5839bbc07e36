mod helpers;

mod access;
mod books;
mod keys;
mod revocation;
mod sessions;
