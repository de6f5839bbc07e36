mod helpers;

mod access;
mod accounts;
mod attacks;
mod books;
mod feed;
mod keys;
mod openapi;
mod revocation;
mod sessions;
mod startup;
