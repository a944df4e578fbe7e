//! Outgoing mail. Use cases never send directly: they enqueue a `send_email` job (body
//! encrypted, since it may hold a sign-in link) and the worker hands it to a `Mailer`:
//! real SMTP through lettre, or, with no SMTP configured, a file in `<data-dir>/outbox/`.

use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::secrets::Secret;
use crate::{Core, Result};
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::ConnectionTrait;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail server unavailable: {0}")]
    Transient(String),
    #[error("mail refused: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError>;
}

/// How to reach the SMTP server.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    /// none | starttls | tls
    #[serde(default = "default_tls")]
    pub tls: String,
}

fn default_port() -> u16 {
    587
}
fn default_tls() -> String {
    "starttls".into()
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, String> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| format!("smtp.from {:?} is not a mailbox: {e}", cfg.from))?;
        let mut b = match cfg.tls.as_str() {
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            "tls" => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| e.to_string())?
            }
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| e.to_string())?,
            other => {
                return Err(format!(
                    "smtp.tls must be none, starttls or tls, not {other:?}"
                ))
            }
        }
        .port(cfg.port)
        .timeout(Some(std::time::Duration::from_secs(20)));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        Ok(Self {
            transport: b.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError::Permanent(format!("bad address {to:?}: {e}")))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| MailError::Permanent(e.to_string()))?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
            Err(e) => Err(MailError::Transient(e.to_string())),
        }
    }
}

/// With no SMTP configured: each mail becomes a file, and its links are logged.
pub struct FileMailer {
    pub dir: PathBuf,
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| MailError::Transient(e.to_string()))?;
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"),
            sanitize(to)
        );
        let path = self.dir.join(name);
        let text = format!("To: {to}\nSubject: {subject}\n\n{body}\n");
        tokio::fs::write(&path, text)
            .await
            .map_err(|e| MailError::Transient(e.to_string()))?;
        let links: Vec<&str> = body
            .split_whitespace()
            .filter(|w| w.starts_with("http"))
            .collect();
        tracing::info!(to, subject, path = %path.display(), ?links, "no SMTP configured: mail saved to the outbox");
        Ok(())
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '@' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Text that goes into a mail on one line (a name, a subject): line breaks and other control
/// characters become spaces, so a name cannot add lines or headers of its own.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Enqueues a mail inside the caller's transaction. The body is encrypted at rest; the
/// subject and address are kept to one line.
pub async fn enqueue(
    core: &Core,
    conn: &impl ConnectionTrait,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<()> {
    SendEmail {
        body: core.secrets.encrypt(body),
        subject: one_line(subject),
        to: one_line(to),
    }
    .enqueue(conn, JobOptions::at(core.now()))
    .await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Sends a queued mail. The body is encrypted at rest (it may hold a sign-in link).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SendEmail {
    pub body: String,
    pub subject: String,
    pub to: String,
}

#[async_trait]
impl BackgroundJob for SendEmail {
    const NAME: &'static str = "send_email";

    async fn run(&self, core: &Core, _job: &JobMeta) -> std::result::Result<(), JobError> {
        let body = core
            .secrets
            .decrypt(&self.body)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        core.mailer
            .send(&self.to, &self.subject, body.expose())
            .await
            .map_err(|e| match e {
                MailError::Transient(m) => JobError::Transient(m),
                MailError::Permanent(m) => JobError::Permanent(m),
            })
    }
}
