//! Test support: a fresh migrated database per test (SQLite or PostgreSQL), the headless browser
//! driver, and `TestApp`: the whole product on a loopback port.

pub mod app;
pub mod browser;
pub mod db;

pub use app::{csrf_of, Session, TestApp};
pub use browser::Browser;
pub use db::TestDb;
