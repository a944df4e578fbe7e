//! Sources: the messenger accounts a company connects (MISSION R1). Credentials are validated
//! against the provider before anything is stored, kept encrypted, and the source's health
//! (connected, mode, last message, last error) is tracked for the Sources page.

pub mod api;
pub use crate::connectors::model::*;
pub mod hooks;
pub mod runtime;

use crate::jobs::{BackgroundJob, JobOptions};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_channels::avito::AvitoClient;
use chatter_channels::max::MaxClient;
use chatter_channels::sms::{SmsClient, SmsGatewayConfig};
use chatter_channels::vk::VkClient;
use chatter_channels::whatsapp::WhatsAppClient;
use chatter_channels::{telegram::TelegramClient, ChannelError, Identity};
use chatter_domain::values::{limits, optional_text, required_text};
use chatter_domain::{text, FieldError, Permission, SourceKind};
use chatter_store::entity::source;
use runtime::SourceSetup;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, TransactionTrait,
};

use uuid::Uuid;

/// What the add-source form asks for, per kind.
pub enum NewSource {
    TelegramBot {
        token: String,
    },
    /// A community token and the community's id (a number, `club123` or a vk.com link).
    VkBot {
        token: String,
        group_id: String,
    },
    MaxBot {
        token: String,
    },
    Avito {
        client_id: String,
        client_secret: String,
    },
    /// A WhatsApp Business number: its `phone_number_id` (not the number itself), the business
    /// account id for templates, a system-user access token and the Meta app's secret.
    WhatsApp {
        phone_number_id: String,
        waba_id: String,
        access_token: String,
        app_secret: String,
    },
    /// An SMS gateway account (Sipout): the API key from the cabinet and an optional sender name.
    Sms {
        api_key: String,
        sender: String,
    },
}

impl NewSource {
    pub fn kind(&self) -> SourceKind {
        match self {
            NewSource::TelegramBot { .. } => SourceKind::TelegramBot,
            NewSource::VkBot { .. } => SourceKind::VkBot,
            NewSource::MaxBot { .. } => SourceKind::MaxBot,
            NewSource::Avito { .. } => SourceKind::Avito,
            NewSource::WhatsApp { .. } => SourceKind::Whatsapp,
            NewSource::Sms { .. } => SourceKind::SipoutSms,
        }
    }

    /// Settings that come from the form rather than from the provider's answer.
    fn form_settings(&self, settings: &mut SourceSettings) {
        match self {
            NewSource::WhatsApp { waba_id, .. } => {
                settings.waba_id = Some(waba_id.trim().to_owned()).filter(|w| !w.is_empty());
            }
            NewSource::Sms { sender, .. } => {
                settings.sms_sender = Some(sender.trim().to_owned()).filter(|s| !s.is_empty());
            }
            _ => {}
        }
    }

    /// Every credential field as (form field, value), for the limits every one of them has.
    fn credentials(&self) -> Vec<(&'static str, &str)> {
        match self {
            NewSource::TelegramBot { token } => vec![("token", token)],
            NewSource::VkBot { token, group_id } => {
                vec![("vk_token", token), ("vk_group_id", group_id)]
            }
            NewSource::MaxBot { token } => vec![("max_token", token)],
            NewSource::Avito {
                client_id,
                client_secret,
            } => vec![
                ("avito_client_id", client_id),
                ("avito_client_secret", client_secret),
            ],
            NewSource::WhatsApp {
                phone_number_id,
                waba_id,
                access_token,
                app_secret,
            } => vec![
                ("wa_phone_number_id", phone_number_id),
                ("wa_waba_id", waba_id),
                ("wa_access_token", access_token),
                ("wa_app_secret", app_secret),
            ],
            NewSource::Sms { api_key, sender } => {
                vec![("sms_api_key", api_key), ("sms_sender", sender)]
            }
        }
    }

    /// The form field a wrong credential is reported on.
    fn main_field(&self) -> &'static str {
        match self {
            NewSource::TelegramBot { .. } => "token",
            NewSource::VkBot { .. } => "vk_token",
            NewSource::MaxBot { .. } => "max_token",
            NewSource::Avito { .. } => "avito_client_secret",
            NewSource::WhatsApp { .. } => "wa_access_token",
            NewSource::Sms { .. } => "sms_api_key",
        }
    }
}

/// Reads a VK community id as people paste it: `214167102`, `club214167102`,
/// `public214167102`, `-214167102` or a `vk.com/club214167102` link.
pub fn parse_vk_group_id(raw: &str) -> Option<i64> {
    let last = raw.trim().trim_end_matches('/').rsplit('/').next()?;
    let digits = last
        .strip_prefix("club")
        .or_else(|| last.strip_prefix("public"))
        .or_else(|| last.strip_prefix('-'))
        .unwrap_or(last);
    digits.parse::<i64>().ok().filter(|id| *id > 0)
}

/// Connects a Telegram bot by its token: checked with getMe first, so a wrong token changes nothing.
pub async fn add_telegram_bot(core: &Core, actor: &Actor, name: &str, token: &str) -> Result<Uuid> {
    add_source(
        core,
        actor,
        name,
        NewSource::TelegramBot {
            token: token.to_string(),
        },
    )
    .await
}

/// Checks `new`'s credentials with the provider; returns what to store and whom they belong to.
async fn validate(core: &Core, new: &NewSource) -> Result<(SourceSecret, Identity)> {
    // Bounded and on one line before anything goes to the provider (each kind checks its format).
    let refused: Vec<FieldError> = new
        .credentials()
        .into_iter()
        .filter_map(|(f, v)| optional_text(f, v, limits::CREDENTIAL).err())
        .collect();
    if !refused.is_empty() {
        return Err(CoreError::Invalid(refused));
    }
    let field = new.main_field();
    let unreachable = |e: ChannelError| {
        tracing::warn!(error = %e, "the provider did not answer while adding a source");
        CoreError::field(field, "err.provider_unreachable")
    };
    match new {
        NewSource::TelegramBot { token } => {
            let token = token.trim();
            let looks_right = token.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && rest.len() >= 20
            });
            if !looks_right {
                return Err(CoreError::field("token", "err.token_format"));
            }
            let client = TelegramClient::new(
                core.http.clone(),
                &core.config.kinds.telegram.api_base,
                token,
            );
            let me = match client.get_me().await {
                Ok(me) => me,
                Err(ChannelError::Unauthorized(_)) => {
                    return Err(CoreError::field("token", "err.token_rejected"))
                }
                Err(e) => return Err(unreachable(e)),
            };
            let secret = SourceSecret {
                token: token.to_string(),
                webhook_secret: Some(chatter_channels::common::new_secret_token()),
                ..SourceSecret::default()
            };
            Ok((secret, me))
        }
        NewSource::VkBot { token, group_id } => {
            let token = token.trim();
            let mut errs = Vec::new();
            if token.len() < 20 || token.chars().any(char::is_whitespace) {
                errs.push(("vk_token", "err.vk_token_format"));
            }
            let group = parse_vk_group_id(group_id);
            if group.is_none() {
                errs.push(("vk_group_id", "err.vk_group_id"));
            }
            if !errs.is_empty() {
                return Err(CoreError::fields(&errs));
            }
            let group = group.unwrap_or_default();
            let client = VkClient::new(
                core.http.clone(),
                &core.config.kinds.vk.api_base,
                token,
                group,
            );
            let me = match client.get_group().await {
                Ok(me) => me,
                Err(ChannelError::Unauthorized(m)) if m.contains("belongs to community") => {
                    return Err(CoreError::field("vk_group_id", "err.vk_group_mismatch"))
                }
                Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
                    return Err(CoreError::field("vk_token", "err.vk_token_rejected"))
                }
                Err(e) => return Err(unreachable(e)),
            };
            let secret = SourceSecret {
                token: token.to_string(),
                webhook_secret: Some(crate::new_token().0[..40].to_string()),
                ..SourceSecret::default()
            };
            Ok((secret, me))
        }
        NewSource::MaxBot { token } => {
            let token = token.trim();
            if token.len() < 10 || token.chars().any(char::is_whitespace) {
                return Err(CoreError::field("max_token", "err.max_token_format"));
            }
            let client = MaxClient::new(core.max_http(), &core.config.kinds.max.api_base, token);
            let me = match client.me().await {
                Ok(me) => me,
                Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
                    return Err(CoreError::field("max_token", "err.max_token_rejected"))
                }
                Err(e) => return Err(unreachable(e)),
            };
            let secret = SourceSecret {
                token: token.to_string(),
                webhook_secret: Some(chatter_channels::max::new_webhook_secret()),
                ..SourceSecret::default()
            };
            Ok((secret, me))
        }
        NewSource::Avito {
            client_id,
            client_secret,
        } => {
            let (client_id, client_secret) = (client_id.trim(), client_secret.trim());
            let mut errs = Vec::new();
            if client_id.is_empty() {
                errs.push(("avito_client_id", "err.required"));
            }
            if client_secret.is_empty() {
                errs.push(("avito_client_secret", "err.required"));
            }
            if !errs.is_empty() {
                return Err(CoreError::fields(&errs));
            }
            let client = AvitoClient::new(
                core.http.clone(),
                &core.config.kinds.avito.api_base,
                client_id,
                client_secret,
            );
            let me = match client.account().await {
                Ok(me) => me,
                Err(ChannelError::Unauthorized(_)) => {
                    return Err(CoreError::field(
                        "avito_client_secret",
                        "err.avito_rejected",
                    ))
                }
                Err(ChannelError::Permanent(_)) => {
                    return Err(CoreError::field(
                        "avito_client_secret",
                        "err.avito_no_access",
                    ))
                }
                Err(e) => return Err(unreachable(e)),
            };
            let secret = SourceSecret {
                token: client_secret.to_string(),
                webhook_secret: Some(crate::new_token().0),
                client_id: Some(client_id.to_string()),
                ..SourceSecret::default()
            };
            Ok((secret, me))
        }
        NewSource::WhatsApp {
            phone_number_id,
            waba_id,
            access_token,
            app_secret,
        } => {
            let (number, waba) = (phone_number_id.trim(), waba_id.trim());
            let (token, app_secret) = (access_token.trim(), app_secret.trim());
            let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            let mut errs = Vec::new();
            if !digits(number) {
                errs.push(("wa_phone_number_id", "err.wa_id_format"));
            }
            if !digits(waba) {
                errs.push(("wa_waba_id", "err.wa_id_format"));
            }
            if token.len() < 20 || token.chars().any(char::is_whitespace) {
                errs.push(("wa_access_token", "err.wa_token_format"));
            }
            if app_secret.len() < 16 || !app_secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
                errs.push(("wa_app_secret", "err.wa_app_secret_format"));
            }
            if !errs.is_empty() {
                return Err(CoreError::fields(&errs));
            }
            let client = WhatsAppClient::new(
                core.http.clone(),
                &core.config.kinds.whatsapp.api_base,
                &core.config.kinds.whatsapp.api_version,
                number,
                token,
            );
            let me = match chatter_channels::Channel::identify(&client).await {
                Ok(me) => me,
                Err(ChannelError::Unauthorized(_)) => {
                    return Err(CoreError::field("wa_access_token", "err.wa_rejected"))
                }
                Err(ChannelError::Permanent(_)) => {
                    return Err(CoreError::field("wa_phone_number_id", "err.wa_no_number"))
                }
                Err(e) => return Err(unreachable(e)),
            };
            let secret = SourceSecret {
                token: token.to_string(),
                webhook_secret: Some(crate::new_token().0[..32].to_string()),
                app_secret: Some(app_secret.to_string()),
                ..SourceSecret::default()
            };
            // The number's id is what notifications are routed by.
            let me = Identity {
                id: number.to_string(),
                ..me
            };
            Ok((secret, me))
        }
        NewSource::Sms { api_key, sender } => {
            let (key, sender) = (api_key.trim(), sender.trim());
            let mut errs = Vec::new();
            if key.len() < 8 || key.chars().any(char::is_whitespace) {
                errs.push(("sms_api_key", "err.sms_key_format"));
            }
            // Operators register alphanumeric sender names of at most 11 Latin characters.
            let sender_ok = sender.is_empty()
                || (sender.len() <= 11
                    && sender
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._ ".contains(&b)));
            if !sender_ok {
                errs.push(("sms_sender", "err.sms_sender_format"));
            }
            if !errs.is_empty() {
                return Err(CoreError::fields(&errs));
            }
            let client = SmsClient::new(
                core.http.clone(),
                SmsGatewayConfig::sipout(&core.config.kinds.sms.api_base, key, Some(sender)),
            );
            let me = match chatter_channels::Channel::identify(&client).await {
                Ok(me) => me,
                Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
                    return Err(CoreError::field("sms_api_key", "err.sms_rejected"))
                }
                Err(e) => return Err(unreachable(e)),
            };
            let secret = SourceSecret {
                token: key.to_string(),
                webhook_secret: Some(chatter_channels::sms::new_callback_token()),
                ..SourceSecret::default()
            };
            // One account may send under several sender names: each is its own source.
            let me = Identity {
                id: format!("{}:{sender}", me.id),
                ..me
            };
            Ok((secret, me))
        }
    }
}

/// Connects a source: the credentials are checked with the provider first, so wrong ones
/// change nothing; then the source is stored (credentials encrypted) with its setup job.
pub async fn add_source(core: &Core, actor: &Actor, name: &str, new: NewSource) -> Result<Uuid> {
    actor.require(Permission::Manage)?;
    let kind = new.kind();
    let (secret, me) = validate(core, &new).await?;
    let name = match name.trim() {
        "" => match (&me.username, kind) {
            (Some(u), SourceKind::TelegramBot | SourceKind::MaxBot) => format!("@{u}"),
            _ if !text::one_line_lossy(&me.name, limits::SHORT_NAME).is_empty() => {
                text::one_line_lossy(&me.name, limits::SHORT_NAME)
            }
            _ => format!("{} {}", kind.as_str(), me.id),
        },
        n => {
            required_text("name", n, limits::SHORT_NAME).map_err(|e| CoreError::Invalid(vec![e]))?
        }
    };
    let now = core.now();
    let txn = core.db.begin().await?;
    let dup = source::Entity::find()
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .filter(source::Column::Kind.eq(kind.id()))
        .all(&txn)
        .await?
        .into_iter()
        .any(|s| settings_of(&s).bot_id == me.id && s.status != DISABLED);
    if dup {
        return Err(CoreError::field(new.main_field(), "err.bot_already_added"));
    }
    let mut settings = SourceSettings {
        bot_id: me.id.clone(),
        bot_name: me.name.clone(),
        bot_username: me.username.clone(),
        ..SourceSettings::default()
    };
    new.form_settings(&mut settings);
    let id = Uuid::now_v7();
    source::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company_id),
        kind: Set(kind.id()),
        name: Set(name.clone()),
        secret: Set(Some(core.secrets.encrypt(
            &serde_json::to_string(&secret).map_err(|e| CoreError::Internal(e.to_string()))?,
        ))),
        settings: Set(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into())),
        status: Set(CONNECTING.into()),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        cursor: Set(None),
        last_inbound_at: Set(None),
        last_ok_at: Set(Some(now)),
    }
    .insert(&txn)
    .await?;
    let details = serde_json::json!({"kind": kind.as_str(), "bot": me.username, "account": me.id});
    commit_with_setup(txn, actor, id, "source.create", &name, details, now).await?;
    core.jobs_notify.notify_waiters();
    Ok(id)
}

/// Ends a change that (re)connects a source, in the transaction that wrote its row: queues the
/// setup job (which talks to the provider) and records `action` in the audit log, then commits.
/// The caller wakes the job runner once whatever must precede the setup is done.
async fn commit_with_setup(
    txn: sea_orm::DatabaseTransaction,
    actor: &Actor,
    id: Uuid,
    action: &str,
    name: &str,
    details: serde_json::Value,
    now: i64,
) -> Result<()> {
    SourceSetup { source_id: id }
        .enqueue(&txn, JobOptions::at(now).company(actor.company_id))
        .await?;
    audit::record(&txn, actor, now, action, name, details).await?;
    txn.commit().await?;
    Ok(())
}

/// Gives an existing source new credentials of the same kind (a new bot token after the old
/// one was revoked, a new account after a move): checked with the provider first, then stored
/// with a fresh polling position and set up again. History stays with the source.
pub async fn replace_credentials(
    core: &Core,
    actor: &Actor,
    id: Uuid,
    new: NewSource,
) -> Result<()> {
    actor.require(Permission::Manage)?;
    let s = get(core, actor, id).await?;
    if s.kind != new.kind().id() {
        return Err(CoreError::field("kind", "err.kind_unsupported"));
    }
    let (secret, me) = validate(core, &new).await?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let name = s.name.clone();
    let mut settings = SourceSettings {
        bot_id: me.id.clone(),
        bot_name: me.name.clone(),
        bot_username: me.username.clone(),
        ..SourceSettings::default()
    };
    new.form_settings(&mut settings);
    let mut am = s.into_active_model();
    am.secret = Set(Some(core.secrets.encrypt(
        &serde_json::to_string(&secret).map_err(|e| CoreError::Internal(e.to_string()))?,
    )));
    am.settings = Set(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()));
    am.status = Set(CONNECTING.into());
    am.last_error = Set(None);
    // The new credentials' positions start afresh: an old cursor would skip or mean nothing.
    am.cursor = Set(None);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    let details = serde_json::json!({"account": me.id});
    commit_with_setup(txn, actor, id, "source.reconnect", &name, details, now).await?;
    core.clients.forget(id);
    core.jobs_notify.notify_waiters();
    Ok(())
}

pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<source::Model>> {
    actor.require(Permission::Read)?;
    Ok(source::Entity::find()
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .order_by_asc(source::Column::CreatedAt)
        .all(&core.db)
        .await?)
}

/// Turns a source off (stops receiving; history stays) or on again (set up afresh).
pub async fn set_enabled(core: &Core, actor: &Actor, id: Uuid, enabled: bool) -> Result<()> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let s = source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let name = s.name.clone();
    let mut am = s.into_active_model();
    am.status = Set(if enabled { CONNECTING } else { DISABLED }.into());
    am.last_error = Set(None);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    let action = if enabled {
        "source.enable"
    } else {
        "source.disable"
    };
    commit_with_setup(txn, actor, id, action, &name, serde_json::json!({}), now).await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}
