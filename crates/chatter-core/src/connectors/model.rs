//! What every part of Chatter reads about a stored source: its status names, its public
//! settings and decrypted credentials, and the writes of its health and settings. The inbox,
//! the CRM sync and the sources' own pages all use these; nothing here talks to a provider.

use crate::{Actor, Core, CoreError, Result};
use chatter_domain::{Permission, SourceId};
use chatter_store::entity::source;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter,
};

pub const CONNECTING: &str = "connecting";
pub const CONNECTED: &str = "connected";
pub const TOKEN_REVOKED: &str = "token_revoked";
pub const ERROR: &str = "error";
pub const DISABLED: &str = "disabled";

pub use chatter_channels::{Credentials as SourceSecret, SourceSettings};

pub fn settings_of(s: &source::Model) -> SourceSettings {
    chatter_store::stored_json::read("sources.settings", s.id, &s.settings)
}

pub fn secret_of(core: &Core, s: &source::Model) -> Result<SourceSecret> {
    let enc = s
        .secret
        .as_deref()
        .ok_or(CoreError::Internal("source has no credentials".into()))?;
    let plain = core
        .secrets
        .decrypt(enc)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    serde_json::from_str(plain.expose())
        .map_err(|e| CoreError::Internal(format!("bad source secret: {e}")))
}

/// Records the outcome of talking to the provider for the Sources page.
pub async fn record_health(
    conn: &impl ConnectionTrait,
    id: SourceId,
    status: &str,
    error: Option<String>,
    now: i64,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    let mut q = source::Entity::update_many()
        .col_expr(source::Column::Status, Expr::value(status))
        .col_expr(source::Column::LastError, Expr::value(error.clone()))
        .col_expr(source::Column::UpdatedAt, Expr::value(now))
        .filter(source::Column::Id.eq(id))
        .filter(source::Column::Status.ne(DISABLED));
    if error.is_none() {
        q = q.col_expr(source::Column::LastOkAt, Expr::value(now));
    }
    q.exec(conn).await?;
    Ok(())
}

/// Stores a source's public settings.
pub async fn save_settings(
    conn: &impl ConnectionTrait,
    id: SourceId,
    settings: &SourceSettings,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    source::Entity::update_many()
        .col_expr(
            source::Column::Settings,
            Expr::value(serde_json::to_string(settings).unwrap_or_else(|_| "{}".into())),
        )
        .filter(source::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn set_mode(conn: &impl ConnectionTrait, s: &source::Model, mode: &str) -> Result<()> {
    let mut settings = settings_of(s);
    if settings.mode == mode {
        return Ok(());
    }
    settings.mode = mode.to_string();
    let mut am = s.clone().into_active_model();
    am.settings = Set(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()));
    am.update(conn).await?;
    Ok(())
}

pub async fn get(core: &Core, actor: &Actor, id: SourceId) -> Result<source::Model> {
    actor.require(Permission::Read)?;
    source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}
