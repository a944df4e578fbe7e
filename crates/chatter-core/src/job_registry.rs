//! Every background job the product runs, listed once. `chatter serve`, the test harness and
//! the demo all run this registry; the queue runtime (`jobs`) knows none of these types, so
//! the capabilities that enqueue jobs depend on it without it depending back on them.

use crate::jobs::Registry;
use crate::{
    accounts, api_source, automation, backup, billing, crm, digest, exports, inbox, mailer,
    scheduled, sources,
};

impl Registry {
    /// The registry of every job type, by its `NAME`.
    pub fn standard() -> Self {
        Registry::default()
            // Mail and accounts.
            .register::<mailer::SendEmail>()
            .register::<accounts::PasswordResetMail>()
            .register::<accounts::signup::SignUpMail>()
            // Operations and company data.
            .register::<backup::DailyBackup>()
            .register::<billing::gate::BillingSweep>()
            .register::<digest::DailyDigest>()
            .register::<exports::ExportJob>()
            // Sources of every kind: setup, replies, files.
            .register::<sources::runtime::SourceSetup>()
            .register::<inbox::send::SendMessage>()
            .register::<inbox::send::FetchFile>()
            // The API source's outgoing webhooks.
            .register::<api_source::Dispatch>()
            .register::<api_source::Deliver>()
            // The CRM sync.
            .register::<crm::sync::CrmDrain>()
            .register::<crm::sync::CrmResponsiblePull>()
            // Automation: replies scheduled for later.
            .register::<scheduled::SendScheduled>()
            // Auto-replies: the check of a customer's message and the "no answer" timer.
            .register::<automation::replies::run::AutoReplyCheck>()
            .register::<automation::replies::run::NoAnswerTimer>()
    }
}

#[cfg(test)]
mod tests {
    use crate::jobs::{BackgroundJob, JobOptions, Registry};
    use crate::{accounts, api_source, backup, crm, exports, inbox, mailer, sources};
    use chatter_store::jobs::NewJob;
    use serde_json::json;
    use uuid::Uuid;

    const NOW: i64 = 1_767_225_600_000;

    #[test]
    fn the_standard_registry_runs_every_job_kind() {
        assert_eq!(
            Registry::standard().kinds(),
            [
                "api_webhook_deliver",
                "api_webhook_dispatch",
                "auto_reply_check",
                "auto_reply_no_answer",
                "backup_daily",
                "billing_sweep",
                "company_export",
                "crm_drain",
                "crm_responsible_pull",
                "digest_daily",
                "fetch_file",
                "password_reset_mail",
                "send_email",
                "send_message",
                "send_scheduled",
                "sign_up_mail",
                "source_setup",
            ]
        );
    }

    /// The typed row equals the row the string-kind code wrote, field by field.
    fn same<J: BackgroundJob>(job: J, opts: JobOptions, old: NewJob) {
        let new = job.to_new_job(&opts).expect("encodes");
        assert_eq!(new.kind, old.kind);
        assert_eq!(
            new.payload.to_string(),
            old.payload.to_string(),
            "{}",
            J::NAME
        );
        assert_eq!(new.company_id, old.company_id, "{}", J::NAME);
        assert_eq!(new.run_at, old.run_at, "{}", J::NAME);
        assert_eq!(new.dedup_key, old.dedup_key, "{}", J::NAME);
        assert_eq!(new.max_attempts, old.max_attempts, "{}", J::NAME);
    }

    #[test]
    fn typed_jobs_write_the_rows_the_string_kinds_wrote() {
        let (id, company) = (Uuid::now_v7(), Uuid::now_v7());
        let at = || JobOptions::at(NOW);
        same(
            inbox::send::SendMessage {
                message_id: id.into(),
            },
            at().company(company),
            NewJob::new("send_message", json!({"message_id": id}), NOW)
                .company(company)
                .max_attempts(12),
        );
        same(
            inbox::send::FetchFile {
                message_id: id.into(),
            },
            at().company(company),
            NewJob::new("fetch_file", json!({"message_id": id}), NOW).company(company),
        );
        same(
            sources::runtime::SourceSetup {
                source_id: id.into(),
            },
            at().company(company),
            NewJob::new("source_setup", json!({"source_id": id}), NOW).company(company),
        );
        same(
            crm::sync::CrmDrain {
                company_id: company,
            },
            at().company(company),
            NewJob::new("crm_drain", json!({ "company_id": company }), NOW)
                .company(company)
                .dedup(format!("crm_drain:{company}"))
                .max_attempts(1_000_000),
        );
        same(
            backup::DailyBackup {},
            at().run_at(NOW + 5).dedup("backup_daily:2026-01-01"),
            NewJob::new("backup_daily", json!({}), NOW)
                .run_at(NOW + 5)
                .dedup("backup_daily:2026-01-01")
                .max_attempts(3),
        );
        same(
            exports::ExportJob { export_id: id },
            at().company(company),
            NewJob::new("company_export", json!({"export_id": id}), NOW)
                .company(company)
                .dedup(format!("company_export:{id}"))
                .max_attempts(5),
        );
        same(
            api_source::Dispatch {},
            at(),
            NewJob::new("api_webhook_dispatch", json!({}), NOW)
                .dedup("api_webhook_dispatch")
                .max_attempts(1_000_000),
        );
        same(
            api_source::Deliver { delivery_id: id },
            at().company(company),
            NewJob::new("api_webhook_deliver", json!({"delivery_id": id}), NOW)
                .company(company)
                .dedup(format!("api_webhook_deliver:{id}"))
                .max_attempts(api_source::DELIVERY_ATTEMPTS),
        );
        same(
            mailer::SendEmail {
                body: "sealed".into(),
                subject: "S".into(),
                to: "a@b.c".into(),
            },
            at(),
            NewJob::new(
                "send_email",
                json!({"to": "a@b.c", "subject": "S", "body": "sealed"}),
                NOW,
            ),
        );
        same(
            accounts::PasswordResetMail {
                email: "a@b.c".into(),
                ip: "127.0.0.1".into(),
                lang: "ru".into(),
                user_agent: "UA".into(),
            },
            at(),
            NewJob::new(
                "password_reset_mail",
                json!({"email": "a@b.c", "lang": "ru", "ip": "127.0.0.1", "user_agent": "UA"}),
                NOW,
            ),
        );
        same(
            accounts::signup::SignUpMail {
                company_name: "C".into(),
                email: "a@b.c".into(),
                ip: "127.0.0.1".into(),
                lang: "en".into(),
                name: "N".into(),
                password_hash: "sealed".into(),
                user_agent: "UA".into(),
            },
            at(),
            NewJob::new(
                "sign_up_mail",
                json!({"email": "a@b.c", "name": "N", "company_name": "C",
                       "password_hash": "sealed", "lang": "en", "ip": "127.0.0.1",
                       "user_agent": "UA"}),
                NOW,
            ),
        );
    }
}
