//! Integration tests: one binary, one module per area. Each test starts the whole product on
//! a loopback port over a fresh database (SQLite; PostgreSQL when TEST_DATABASE_URL is set).

mod api;
mod api_source;
mod auth;
mod avito;
mod browser;
mod browser_crm;
mod browser_inbox;
mod browser_security;
mod cli;
mod crm;
mod crm_signin;
mod crm_sync;
mod egress;
mod exports;
mod fuzz_corpus;
mod max;
mod messages;
mod nodes;
mod nodes_faults;
mod operator;
mod permissions;
mod poison;
mod reliability;
mod reliability_kinds;
mod rules;
mod server_process;
mod signup;
mod sms;
mod storage;
mod takeover;
mod team;
mod telegram;
mod vk;
mod web_security;
mod whatsapp;
