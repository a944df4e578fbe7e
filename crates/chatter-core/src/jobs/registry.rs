//! The standard job handlers in one place: mail, backups, company exports, password-reset and
//! sign-up mail. The queue runtime (`worker`) knows none of them, so the capabilities that
//! enqueue jobs can depend on it without depending back on each other.

use super::worker::{JobError, JobHandler, Registry};
use crate::Core;
use async_trait::async_trait;
use chatter_store::jobs::Claimed;

impl Registry {
    /// The handlers this crate provides (mail, backups, company exports).
    pub fn standard() -> Self {
        Registry::default()
            .with(crate::mailer::JOB_SEND_EMAIL, SendEmail)
            .with(crate::backup::JOB_BACKUP_DAILY, crate::backup::DailyBackup)
            .with(crate::exports::JOB_EXPORT, crate::exports::ExportJob)
            .with(
                crate::accounts::JOB_PASSWORD_RESET,
                crate::accounts::PasswordResetMail,
            )
            .with(
                crate::accounts::signup::JOB_SIGN_UP_MAIL,
                crate::accounts::signup::SignUpMail,
            )
    }
}

/// Sends a queued mail.
struct SendEmail;

#[async_trait]
impl JobHandler for SendEmail {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError> {
        #[derive(serde::Deserialize)]
        struct P {
            to: String,
            subject: String,
            body: String,
        }
        let p: P = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let body = core
            .secrets
            .decrypt(&p.body)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        core.mailer
            .send(&p.to, &p.subject, body.expose())
            .await
            .map_err(|e| match e {
                crate::mailer::MailError::Transient(m) => JobError::Transient(m),
                crate::mailer::MailError::Permanent(m) => JobError::Permanent(m),
            })
    }
}
