pub mod books;
pub mod health;
