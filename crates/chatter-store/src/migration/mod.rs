//! Schema migrations, one set for SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod cols;
mod m0001_foundation;
mod m0002_messages;
mod m0003_crm;
mod m0004_crm_sync;
mod m0005_identities;
mod m0007_api_source;
mod m0009_dead_letters;
mod m0010_operators_exports;
mod m0012_job_takeover;
mod m0013_nodes;
mod m0014_signup_confirmations;
mod m0015_tls_certificates;
mod m0016_dashboard_figures;
mod m0017_search;
mod m0019_notes_notifications;
mod m0020_labels;
mod m0021_contact_people;
mod m0022_working_hours;
mod m0023_reply_templates;
mod m0024_scheduled_replies;
mod m0025_auto_replies;
mod m0029_crm_deal_attempts;
mod m0030_automatic_messages;
mod m0031_event_tx;
mod m0033_blobs;
mod m0036_inbound_days;
mod m0037_source_logins;
mod m0040_billing;
mod m0043_crm_imports;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_foundation::Migration),
            Box::new(m0002_messages::Migration),
            Box::new(m0003_crm::Migration),
            Box::new(m0004_crm_sync::Migration),
            Box::new(m0005_identities::Migration),
            Box::new(m0007_api_source::Migration),
            Box::new(m0009_dead_letters::Migration),
            Box::new(m0010_operators_exports::Migration),
            Box::new(m0012_job_takeover::Migration),
            Box::new(m0013_nodes::Migration),
            Box::new(m0014_signup_confirmations::Migration),
            Box::new(m0015_tls_certificates::Migration),
            Box::new(m0016_dashboard_figures::Migration),
            Box::new(m0017_search::Migration),
            Box::new(m0019_notes_notifications::Migration),
            Box::new(m0020_labels::Migration),
            Box::new(m0021_contact_people::Migration),
            Box::new(m0022_working_hours::Migration),
            Box::new(m0023_reply_templates::Migration),
            Box::new(m0024_scheduled_replies::Migration),
            Box::new(m0025_auto_replies::Migration),
            Box::new(m0029_crm_deal_attempts::Migration),
            Box::new(m0030_automatic_messages::Migration),
            Box::new(m0031_event_tx::Migration),
            Box::new(m0033_blobs::Migration),
            Box::new(m0036_inbound_days::Migration),
            Box::new(m0037_source_logins::Migration),
            Box::new(m0040_billing::Migration),
            Box::new(m0043_crm_imports::Migration),
        ]
    }
}
