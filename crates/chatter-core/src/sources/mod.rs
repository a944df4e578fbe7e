//! Sources: the messenger accounts a company connects (requirement R1). Credentials are validated
//! against the provider before anything is stored, kept encrypted, and the source's health
//! (connected, mode, last message, last error) is tracked for the Sources page.

pub mod api;
pub use crate::connectors::model::*;
pub mod hooks;
pub mod login;
pub mod runtime;

use crate::jobs::{BackgroundJob, JobOptions};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_channels::{FormRefusal, FormValues, Kind, Validated};
use chatter_domain::values::{limits, optional_text, required_text};
use chatter_domain::{text, FieldError, Permission, SourceId, SourceKind};
use chatter_store::entity::source;
use runtime::SourceSetup;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, TransactionTrait,
};

/// What the add-source form (or the API) sent for a new source: its kind and the values of
/// the kind's fields by name (`vk_token` …). Which fields there are, and what they mean, is
/// the kind's (`Kind::fields`, `Kind::validate`).
#[derive(Clone, Debug)]
pub struct NewSource {
    /// The kind to connect.
    pub kind: SourceKind,
    /// The values typed, by field name; fields the kind does not have are ignored.
    pub fields: FormValues,
}

impl NewSource {
    /// A source of `kind` with `fields` as (name, value) pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        kind: SourceKind,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        NewSource {
            kind,
            fields: fields.into_iter().collect(),
        }
    }

    /// The stored kind.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Its registered kind, when that kind has an add-source form.
    fn form_kind(&self) -> Result<&'static dyn Kind> {
        chatter_channels::kind_of(self.kind)
            .filter(|k| !k.fields().is_empty())
            .ok_or_else(|| CoreError::field("kind", "err.kind_unsupported"))
    }
}

/// Checks `new`'s values with its kind and the provider; returns the kind and what to store.
/// Every value is first bounded to one line of `limits::CREDENTIAL`, whatever the kind.
async fn validate(core: &Core, new: &NewSource) -> Result<(&'static dyn Kind, Validated)> {
    let kind = new.form_kind()?;
    let refused: Vec<FieldError> = kind
        .fields()
        .iter()
        .filter_map(|f| optional_text(f.name, new.fields.get(f.name), limits::CREDENTIAL).err())
        .collect();
    if !refused.is_empty() {
        return Err(CoreError::Invalid(refused));
    }
    match kind.validate(core.kind_env(), &new.fields).await {
        Ok(v) => Ok((kind, v)),
        Err(FormRefusal::Fields(errs)) => Err(CoreError::fields(&errs)),
        Err(FormRefusal::Unreachable(e)) => {
            tracing::warn!(error = %e, "the provider did not answer while adding a source");
            Err(CoreError::field(
                kind.main_field(),
                "err.provider_unreachable",
            ))
        }
    }
}

/// The settings a validated source starts with: the form's, and whom the credentials belong to.
fn settings_from(v: &Validated) -> SourceSettings {
    SourceSettings {
        bot_id: v.identity.id.clone(),
        bot_name: v.identity.name.clone(),
        bot_username: v.identity.username.clone(),
        ..v.settings.clone()
    }
}

/// Connects a source: the credentials are checked with the provider first, so wrong ones
/// change nothing; then the source is stored (credentials encrypted) with its setup job.
pub async fn add_source(
    core: &Core,
    actor: &Actor,
    name: &str,
    new: NewSource,
) -> Result<SourceId> {
    actor.require(Permission::Manage)?;
    let (kind, v) = validate(core, &new).await?;
    store_new(core, actor, kind, name, v).await
}

/// Stores a source whose credentials the provider accepted (a validated form, or a login in
/// steps that ended): refused when the same account is already connected here, or — for kinds
/// connected by a login, where one account is one person — in another company.
async fn store_new(
    core: &Core,
    actor: &Actor,
    kind: &'static dyn Kind,
    name: &str,
    v: Validated,
) -> Result<SourceId> {
    let source_kind = kind.source_kind();
    let me = &v.identity;
    let name = match name.trim() {
        "" => match kind.default_name(me) {
            Some(n) => text::one_line_lossy(&n, limits::SHORT_NAME),
            None if !text::one_line_lossy(&me.name, limits::SHORT_NAME).is_empty() => {
                text::one_line_lossy(&me.name, limits::SHORT_NAME)
            }
            None => format!("{} {}", source_kind.as_str(), me.id),
        },
        n => {
            required_text("name", n, limits::SHORT_NAME).map_err(|e| CoreError::Invalid(vec![e]))?
        }
    };
    let now = core.now();
    let txn = core.db.begin().await?;
    let same: Vec<source::Model> = source::Entity::find()
        .filter(source::Column::Kind.eq(source_kind))
        .all(&txn)
        .await?
        .into_iter()
        .filter(|s| settings_of(s).bot_id == me.id && s.status != DISABLED)
        .collect();
    if same.iter().any(|s| s.company_id == actor.company_id) {
        return Err(CoreError::field(kind.main_field(), "err.bot_already_added"));
    }
    if let (Some(login), false) = (kind.login(), same.is_empty()) {
        return Err(CoreError::field(
            (login.main_field)(""),
            "err.account_in_other_company",
        ));
    }
    let settings = settings_from(&v);
    let id = SourceId::new();
    source::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company_id),
        kind: Set(source_kind),
        name: Set(name.clone()),
        secret: Set(Some(
            core.secrets.encrypt(
                &serde_json::to_string(&v.credentials)
                    .map_err(|e| CoreError::Internal(e.to_string()))?,
            ),
        )),
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
    let details =
        serde_json::json!({"kind": source_kind.as_str(), "bot": me.username, "account": me.id});
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
    id: SourceId,
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
    id: SourceId,
    new: NewSource,
) -> Result<()> {
    actor.require(Permission::Manage)?;
    let s = get(core, actor, id).await?;
    if s.kind != new.kind() {
        return Err(CoreError::field("kind", "err.kind_unsupported"));
    }
    let (_, v) = validate(core, &new).await?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let name = s.name.clone();
    let settings = settings_from(&v);
    let mut am = s.into_active_model();
    am.secret = Set(Some(core.secrets.encrypt(
        &serde_json::to_string(&v.credentials).map_err(|e| CoreError::Internal(e.to_string()))?,
    )));
    am.settings = Set(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()));
    am.status = Set(CONNECTING.into());
    am.last_error = Set(None);
    // The new credentials' positions start afresh: an old cursor would skip or mean nothing.
    am.cursor = Set(None);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    let details = serde_json::json!({"account": v.identity.id});
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
        .all(&core.read)
        .await?)
}

/// Turns a source off (stops receiving; history stays) or on again (set up afresh).
pub async fn set_enabled(core: &Core, actor: &Actor, id: SourceId, enabled: bool) -> Result<()> {
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

/// Sets what one billed part of an SMS source costs (typed in roubles, `3,50`; empty: none),
/// which the auto-reply editor multiplies by a reply's parts. Only a kind billed in parts (SMS)
/// has one (`price` refused on another kind: `err.sms_part_price_kind`).
pub async fn set_sms_part_price(
    core: &Core,
    actor: &Actor,
    id: SourceId,
    typed: &str,
) -> Result<Option<u32>> {
    actor.require(Permission::Manage)?;
    let Ok(price) = chatter_channels::sms::part_price(typed) else {
        return Err(CoreError::field("price", "err.sms_part_price"));
    };
    let now = core.now();
    let txn = core.db.begin().await?;
    let s = source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    // Only a kind billed in parts (SMS) has a price of a part.
    let billed = chatter_channels::kind_of(s.kind).is_some_and(|k| k.text_parts("").is_some());
    if !billed {
        return Err(CoreError::field("price", "err.sms_part_price_kind"));
    }
    let settings = SourceSettings {
        sms_part_price_kopecks: price,
        ..settings_of(&s)
    };
    let mut am = s.into_active_model();
    am.settings =
        Set(serde_json::to_string(&settings).map_err(|e| CoreError::Internal(e.to_string()))?);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    let details = serde_json::json!({ "sms_part_price_kopecks": price });
    audit::record(
        &txn,
        actor,
        now,
        "source.sms_price",
        &id.to_string(),
        details,
    )
    .await?;
    txn.commit().await?;
    Ok(price)
}
