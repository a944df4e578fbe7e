//! How conversations land in the CRM (requirement R3.3): pipeline, first stage, responsible,
//! field mapping and Unsorted-or-regular — set once for the company and overridden per source
//! where a source needs something else. Stored as JSON in `crm_settings` under the scope
//! `default` or the source's id; every value is checked against the synced pipelines, users and
//! fields before it is stored.

use crate::crm::{self, integration::Metadata};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_domain::routing::Responsible;
use chatter_domain::values::{limits, optional_text};
use chatter_domain::{FieldError, Permission, SourceId};
use chatter_store::entity::crm_setting;
use chatter_store::stmt;
use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};
use serde::{Deserialize, Serialize};

pub const DEFAULT_SCOPE: &str = "default";
/// The scope under which the Chats API connection is remembered.
pub const CHATS_SCOPE: &str = "chats";
/// The scope of the company's "one responsible person" setting (`sync::ResponsibleLead`).
pub const RESPONSIBLE_SCOPE: &str = "responsible";

/// Where and how a new conversation becomes a deal. `None` = inherit (a source inherits the
/// company default; the default inherits amoCRM's own default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncSettings {
    pub pipeline_id: Option<i64>,
    /// A stage of the pipeline; `None` = its first regular stage.
    pub status_id: Option<i64>,
    pub responsible: Option<Responsible>,
    /// Create the deal in Неразобранное (Unsorted) instead of a regular stage.
    pub unsorted: Option<bool>,
    /// A new conversation of a customer whose deal is still open joins that deal
    /// (default); otherwise every new conversation gets a deal of its own.
    pub reuse_open_deal: Option<bool>,
    /// Added to every deal of this scope (the source's name and kind are always added).
    pub tags: Vec<String>,
    pub fields: FieldMapping,
}

/// Our values copied into amoCRM custom fields (ids from the synced field lists).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldMapping {
    /// Deal field: the source's name («Telegram @acme_bot»).
    pub source_name: Option<i64>,
    /// Contact field: the customer's messenger username or id (`@ivan`, `tg:123`).
    pub username: Option<i64>,
    /// Deal field: a link to the chat (a t.me link where there is one, else our inbox).
    pub chat_link: Option<i64>,
    /// Deal field: the customer's first message.
    pub first_message: Option<i64>,
    /// Deal fields: UTM tags the API source passes with a message.
    pub utm_source: Option<i64>,
    pub utm_medium: Option<i64>,
    pub utm_campaign: Option<i64>,
    /// Deal field: Chatter's marker (the conversation id and the batch it was sent in), which
    /// lets a batch whose answer was lost find the deals it made instead of making them twice.
    pub marker: Option<i64>,
}

impl FieldMapping {
    fn over(&self, base: &FieldMapping) -> FieldMapping {
        FieldMapping {
            source_name: self.source_name.or(base.source_name),
            username: self.username.or(base.username),
            chat_link: self.chat_link.or(base.chat_link),
            first_message: self.first_message.or(base.first_message),
            utm_source: self.utm_source.or(base.utm_source),
            utm_medium: self.utm_medium.or(base.utm_medium),
            utm_campaign: self.utm_campaign.or(base.utm_campaign),
            marker: self.marker.or(base.marker),
        }
    }

    fn deal_fields(&self) -> [(&'static str, Option<i64>); 7] {
        [
            ("fields.source_name", self.source_name),
            ("fields.chat_link", self.chat_link),
            ("fields.first_message", self.first_message),
            ("fields.utm_source", self.utm_source),
            ("fields.utm_medium", self.utm_medium),
            ("fields.utm_campaign", self.utm_campaign),
            ("fields.marker", self.marker),
        ]
    }
}

impl SyncSettings {
    /// These settings with every unset value taken from `base`.
    pub fn over(&self, base: &SyncSettings) -> SyncSettings {
        // A source that names its own pipeline does not inherit the default's stage.
        let (pipeline_id, status_id) = match self.pipeline_id {
            Some(p) => (Some(p), self.status_id),
            None => (base.pipeline_id, self.status_id.or(base.status_id)),
        };
        let mut tags = base.tags.clone();
        for t in &self.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        SyncSettings {
            pipeline_id,
            status_id,
            responsible: self
                .responsible
                .clone()
                .or_else(|| base.responsible.clone()),
            unsorted: self.unsorted.or(base.unsorted),
            reuse_open_deal: self.reuse_open_deal.or(base.reuse_open_deal),
            tags,
            fields: self.fields.over(&base.fields),
        }
    }

    /// Refuses values the synced account does not have.
    pub fn validate(&self, meta: &Metadata) -> Result<()> {
        let mut errors = Vec::new();
        let pipeline = self
            .pipeline_id
            .map(|p| meta.pipelines.iter().find(|x| x.id == p));
        if let Some(None) = pipeline {
            errors.push(("pipeline_id", "err.crm_unknown_pipeline"));
        }
        if let Some(s) = self.status_id {
            let ok = match pipeline.flatten() {
                Some(p) => p.statuses.iter().any(|x| x.id == s),
                None => meta
                    .pipelines
                    .iter()
                    .any(|p| p.statuses.iter().any(|x| x.id == s)),
            };
            if !ok {
                errors.push(("status_id", "err.crm_unknown_stage"));
            }
        }
        let user_ok = |id: &i64| meta.users.iter().any(|u| u.id == *id);
        match &self.responsible {
            Some(Responsible::User(u)) if !user_ok(u) => {
                errors.push(("responsible", "err.crm_unknown_user"))
            }
            Some(Responsible::RoundRobin(list)) if list.is_empty() || !list.iter().all(user_ok) => {
                errors.push(("responsible", "err.crm_round_robin_users"))
            }
            _ => {}
        }
        for (key, id) in self.fields.deal_fields() {
            if let Some(id) = id {
                if !meta.lead_fields.iter().any(|f| f.id == id) {
                    errors.push((key, "err.crm_unknown_field"));
                }
            }
        }
        if let Some(id) = self.fields.username {
            if !meta.contact_fields.iter().any(|f| f.id == id) {
                errors.push(("fields.username", "err.crm_unknown_field"));
            }
        }
        let mut errors: Vec<FieldError> = errors
            .into_iter()
            .map(|(f, k)| FieldError::new(f, k))
            .collect();
        if self.tags.len() > limits::TAGS {
            errors.push(FieldError::too_many("tags", limits::TAGS));
        } else if let Some(e) = self
            .tags
            .iter()
            .find_map(|t| optional_text("tags", t, limits::TAG).err())
        {
            errors.push(e);
        }
        match errors.first() {
            None => Ok(()),
            Some(_) => Err(CoreError::Invalid(errors)),
        }
    }
}

/// Stored settings of `scope`, read typed (a damaged value is logged and counted).
fn read_opt<T: serde::de::DeserializeOwned>(
    company_id: chatter_domain::CompanyId,
    scope: &str,
    s: &str,
) -> Option<T> {
    chatter_store::stored_json::read_opt(
        "crm_settings.settings",
        format_args!("{company_id}/{scope}"),
        Some(s),
    )
}

pub(crate) async fn load_raw(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
    scope: &str,
) -> Result<Option<String>> {
    Ok(
        crm_setting::Entity::find_by_id((company_id.uuid(), scope.to_string()))
            .one(conn)
            .await?
            .map(|r| r.settings),
    )
}

pub(crate) async fn store_raw(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
    scope: &str,
    json: &str,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO crm_settings (company_id, scope, settings, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (company_id, scope) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
        vec![company_id.into(), scope.into(), json.into(), now.into()],
    ))
    .await?;
    Ok(())
}

fn scope_of(source: Option<SourceId>) -> String {
    source.map_or_else(|| DEFAULT_SCOPE.to_string(), |s| s.to_string())
}

/// The stored settings of one scope (the company default when `source` is `None`), unmerged.
pub async fn get(core: &Core, actor: &Actor, source: Option<SourceId>) -> Result<SyncSettings> {
    actor.require(Permission::Read)?;
    let scope = scope_of(source);
    Ok(load_raw(&core.db, actor.company_id, &scope)
        .await?
        .and_then(|s| read_opt(actor.company_id, &scope, &s))
        .unwrap_or_default())
}

/// What applies to a conversation of `source`: the source's settings over the company's.
pub async fn effective(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
    source: SourceId,
) -> Result<SyncSettings> {
    let read = |scope: &str, s: Option<String>| -> SyncSettings {
        s.and_then(|s| read_opt(company_id, scope, &s))
            .unwrap_or_default()
    };
    let base = read(
        DEFAULT_SCOPE,
        load_raw(conn, company_id, DEFAULT_SCOPE).await?,
    );
    let scope = source.to_string();
    let own = read(&scope, load_raw(conn, company_id, &scope).await?);
    Ok(own.over(&base))
}

/// Stores the settings of one scope after checking them against the synced account.
pub async fn save(
    core: &Core,
    actor: &Actor,
    source: Option<SourceId>,
    settings: &SyncSettings,
) -> Result<()> {
    actor.require(Permission::Manage)?;
    let (_, meta) = crm::get(core, actor).await?.ok_or(CoreError::NotFound)?;
    if let Some(s) = source {
        crate::connectors::model::get(core, actor, s).await?;
    }
    settings.validate(&meta)?;
    let json = serde_json::to_string(settings).map_err(|e| CoreError::Internal(e.to_string()))?;
    let now = core.now();
    let txn = core.db.begin().await?;
    store_raw(&txn, actor.company_id, &scope_of(source), &json, now).await?;
    audit::record(
        &txn,
        actor,
        now,
        "crm.settings",
        &scope_of(source),
        serde_json::to_value(settings).unwrap_or_default(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The Chats API connection of a company, once made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChatsState {
    pub amojo_id: Option<String>,
    pub scope_id: Option<String>,
    /// Why connecting failed, in the provider's words.
    pub error: Option<String>,
    pub connected_at: Option<i64>,
}

pub async fn chats_state(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
) -> Result<ChatsState> {
    Ok(load_raw(conn, company_id, CHATS_SCOPE)
        .await?
        .and_then(|s| read_opt(company_id, CHATS_SCOPE, &s))
        .unwrap_or_default())
}

pub(crate) async fn store_chats_state(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
    st: &ChatsState,
    now: i64,
) -> Result<()> {
    let json = serde_json::to_string(st).map_err(|e| CoreError::Internal(e.to_string()))?;
    store_raw(conn, company_id, CHATS_SCOPE, &json, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_overrides_the_default_and_inherits_the_rest() {
        let base = SyncSettings {
            pipeline_id: Some(1),
            status_id: Some(11),
            responsible: Some(Responsible::User(5)),
            tags: vec!["chatter".into()],
            fields: FieldMapping {
                source_name: Some(100),
                ..FieldMapping::default()
            },
            ..SyncSettings::default()
        };
        let own = SyncSettings {
            pipeline_id: Some(2),
            unsorted: Some(true),
            tags: vec!["vip".into()],
            ..SyncSettings::default()
        };
        let s = own.over(&base);
        assert_eq!(s.pipeline_id, Some(2));
        assert_eq!(
            s.status_id, None,
            "another pipeline's stage is not inherited"
        );
        assert_eq!(s.responsible, Some(Responsible::User(5)));
        assert_eq!(s.unsorted, Some(true));
        assert_eq!(s.tags, vec!["chatter".to_string(), "vip".to_string()]);
        assert_eq!(s.fields.source_name, Some(100));
        let same_pipeline = SyncSettings::default().over(&base);
        assert_eq!(same_pipeline.status_id, Some(11));
    }
}
