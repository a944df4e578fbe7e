//! Connecting a source by a login in steps (`Kind::login`: Telegram personal accounts' phone,
//! code and 2FA password), kind-blind. Where a person's login stands is one row per company,
//! person and kind (`source_logins`), its state encrypted with the master key, so a restart
//! between two steps loses nothing. Nothing is connected before the last step succeeds; a
//! refused step changes nothing but its error; starting again forgets the row.

use super::store_new;
use crate::{Actor, Core, CoreError, Result};
use chatter_channels::{FormField, FormRefusal, FormValues, Kind, LoginPending, LoginProgress};
use chatter_domain::values::{limits, optional_text};
use chatter_domain::{FieldError, Permission, SourceId, SourceKind};
use chatter_store::entity::source_login;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};

/// Where a login stands: the step to show, its fields, and the hint to show above them.
#[derive(Clone, Debug)]
pub struct LoginView {
    pub kind: SourceKind,
    /// `""`: the first step.
    pub step: String,
    pub fields: &'static [FormField],
    /// The translation key of the help above the step.
    pub help_key: &'static str,
    /// The provider's hint (the 2FA password's), shown as is.
    pub hint: Option<String>,
}

/// What a step led to.
#[derive(Clone, Debug)]
pub enum LoginOutcome {
    /// Another step to fill in.
    Next(LoginView),
    /// The account is connected as this source.
    Connected(SourceId),
}

/// The kind connected by a login, or `err.kind_unsupported` on `kind`.
fn login_kind(kind: SourceKind) -> Result<&'static dyn Kind> {
    chatter_channels::kind_of(kind)
        .filter(|k| k.login().is_some())
        .ok_or_else(|| CoreError::field("kind", "err.kind_unsupported"))
}

fn key(actor: &Actor, kind: SourceKind) -> (chatter_domain::CompanyId, uuid::Uuid, i32) {
    (
        actor.company_id,
        actor.user_id.map_or(uuid::Uuid::nil(), |u| u.0),
        kind.id(),
    )
}

fn view(kind: &'static dyn Kind, p: &LoginPending) -> LoginView {
    let flow = kind.login().expect("a login kind, checked by login_kind");
    LoginView {
        kind: kind.source_kind(),
        step: p.step.clone(),
        fields: (flow.fields)(&p.step),
        help_key: (flow.help_key)(&p.step),
        hint: p.hint.clone(),
    }
}

/// The stored login of `actor` for `kind`; an unreadable one (another master key) counts as
/// none.
async fn pending(core: &Core, actor: &Actor, kind: SourceKind) -> Result<Option<LoginPending>> {
    let Some(row) = source_login::Entity::find_by_id(key(actor, kind))
        .one(&core.db)
        .await?
    else {
        return Ok(None);
    };
    let read = core
        .secrets
        .decrypt(&row.state)
        .ok()
        .and_then(|s| serde_json::from_str::<LoginPending>(s.expose()).ok());
    if read.is_none() {
        tracing::warn!(
            kind = kind.id(),
            "a stored login is unreadable; it starts again"
        );
    }
    Ok(read)
}

/// Where `actor`'s login of `kind` stands (the first step when none is under way).
pub async fn state(core: &Core, actor: &Actor, kind: SourceKind) -> Result<LoginView> {
    actor.require(Permission::Manage)?;
    let k = login_kind(kind)?;
    let p = pending(core, actor, kind).await?.unwrap_or_default();
    Ok(view(k, &p))
}

/// Forgets `actor`'s login of `kind`, so it starts from the first step.
pub async fn restart(core: &Core, actor: &Actor, kind: SourceKind) -> Result<()> {
    actor.require(Permission::Manage)?;
    login_kind(kind)?;
    source_login::Entity::delete_by_id(key(actor, kind))
        .exec(&core.db)
        .await?;
    Ok(())
}

/// Takes the values of the current step of `actor`'s login of `kind` and moves it on. A
/// refusal is field errors on the step's fields, and the login stays where it was.
pub async fn step(
    core: &Core,
    actor: &Actor,
    kind: SourceKind,
    values: &FormValues,
) -> Result<LoginOutcome> {
    actor.require(Permission::Manage)?;
    let k = login_kind(kind)?;
    let flow = k.login().expect("a login kind");
    let p = pending(core, actor, kind).await?.unwrap_or_default();
    let fields = (flow.fields)(&p.step);
    let refused: Vec<FieldError> = fields
        .iter()
        .filter_map(|f| optional_text(f.name, values.get(f.name), limits::CREDENTIAL).err())
        .collect();
    if !refused.is_empty() {
        return Err(CoreError::Invalid(refused));
    }
    match (flow.step)(core.kind_env(), &p, values).await {
        Ok(LoginProgress::Next(next)) => {
            save(core, actor, kind, &next).await?;
            Ok(LoginOutcome::Next(view(k, &next)))
        }
        Ok(LoginProgress::Done(v)) => {
            // The login is over whatever storing the source says: a refusal (the account is
            // connected elsewhere) is final for this login.
            restart(core, actor, kind).await?;
            let id = store_new(core, actor, k, "", *v).await?;
            Ok(LoginOutcome::Connected(id))
        }
        Err(FormRefusal::Fields(errs)) => Err(CoreError::fields(&errs)),
        Err(FormRefusal::Unreachable(e)) => {
            tracing::warn!(error = %e, "the provider did not answer during a login");
            Err(CoreError::field(
                (flow.main_field)(&p.step),
                "err.provider_unreachable",
            ))
        }
    }
}

async fn save(core: &Core, actor: &Actor, kind: SourceKind, p: &LoginPending) -> Result<()> {
    let now = core.now();
    let state = core
        .secrets
        .encrypt(&serde_json::to_string(p).map_err(|e| CoreError::Internal(e.to_string()))?);
    match source_login::Entity::find_by_id(key(actor, kind))
        .one(&core.db)
        .await?
    {
        Some(row) => {
            let mut am = row.into_active_model();
            am.state = Set(state);
            am.updated_at = Set(now);
            am.update(&core.db).await?;
        }
        None => {
            let (company_id, user_id, kind) = key(actor, kind);
            source_login::ActiveModel {
                company_id: Set(company_id),
                user_id: Set(user_id),
                kind: Set(kind),
                state: Set(state),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&core.db)
            .await?;
        }
    }
    Ok(())
}
