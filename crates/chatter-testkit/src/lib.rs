//! Test support: a fresh migrated database per test (SQLite or PostgreSQL), the headless browser
//! driver, and (later) the `TestApp` builder.

pub mod browser;
pub mod db;

pub use browser::Browser;
pub use db::TestDb;
