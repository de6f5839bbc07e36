mod helpers;

mod access;
mod accounts;
mod attacks;
mod books;
mod cache;
mod feed;
mod keys;
mod openapi;
mod reads;
mod revocation;
mod sessions;
mod startup;
