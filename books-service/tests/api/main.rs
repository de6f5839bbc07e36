mod helpers;

mod access;
mod attacks;
mod books;
mod keys;
mod openapi;
mod revocation;
mod sessions;
mod startup;
