pub mod books;
pub mod health;
pub mod openapi;
