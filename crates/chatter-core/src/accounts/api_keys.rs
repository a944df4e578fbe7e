//! Company API keys for `/api/v1` (`Authorization: Bearer chk_…`). Only a hash is stored; the
//! key is shown once, when created.

use crate::{audit, hash_token, Actor, Core, CoreError, Result};
use chatter_domain::values::{limits, required_text};
use chatter_domain::UserId;
use chatter_domain::{Permission, Role};
use chatter_store::entity::{api_key, company};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, TransactionTrait,
};
use uuid::Uuid;

/// Creates a key; returns the key itself (shown once) and its id.
pub async fn create(core: &Core, actor: &Actor, name: &str) -> Result<(String, Uuid)> {
    actor.require(Permission::Manage)?;
    let name =
        required_text("name", name, limits::SHORT_NAME).map_err(|e| CoreError::Invalid(vec![e]))?;
    let txn = core.db.begin().await?;
    let (key, id) = insert(
        &txn,
        actor.company_id.uuid(),
        actor.user_id.map(UserId::uuid),
        &name,
        core.now(),
    )
    .await?;
    audit::record(
        &txn,
        actor,
        core.now(),
        "api_key.create",
        &name,
        serde_json::json!({"id": id}),
    )
    .await?;
    txn.commit().await?;
    Ok((key, id))
}

/// Inserts a key without an acting member (for `chatter admin api-key create`).
pub async fn insert(
    conn: &impl sea_orm::ConnectionTrait,
    company_id: Uuid,
    created_by: Option<Uuid>,
    name: &str,
    now: i64,
) -> Result<(String, Uuid)> {
    let (t, _) = crate::new_token();
    let key = format!("chk_{t}");
    let id = Uuid::now_v7();
    api_key::ActiveModel {
        id: Set(id),
        company_id: Set(company_id),
        name: Set(name.to_string()),
        prefix: Set(key[..12].to_string()),
        key_hash: Set(hash_token(&key)),
        created_by: Set(created_by),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok((key, id))
}

pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<api_key::Model>> {
    actor.require(Permission::Manage)?;
    Ok(api_key::Entity::find()
        .filter(api_key::Column::CompanyId.eq(actor.company_id))
        .order_by_desc(api_key::Column::CreatedAt)
        .all(&core.db)
        .await?)
}

pub async fn revoke(core: &Core, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(Permission::Manage)?;
    let txn = core.db.begin().await?;
    let k = api_key::Entity::find_by_id(id)
        .filter(api_key::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let name = k.name.clone();
    let mut m = k.into_active_model();
    m.revoked_at = Set(Some(core.now()));
    m.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        core.now(),
        "api_key.revoke",
        &name,
        serde_json::json!({"id": id}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Resolves a bearer key to an actor. API keys act with the admin role of their company.
pub async fn authenticate(core: &Core, key: &str, meta: &crate::ReqMeta) -> Result<Actor> {
    let k = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash_token(key.trim())))
        .one(&core.db)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or(CoreError::Unauthenticated)?;
    company::Entity::find_by_id(k.company_id)
        .one(&core.db)
        .await?
        .ok_or(CoreError::Unauthenticated)?;
    let now = core.now();
    if k.last_used_at.is_none_or(|t| now - t > 60_000) {
        let mut m = k.clone().into_active_model();
        m.last_used_at = Set(Some(now));
        m.update(&core.db).await?;
    }
    Ok(Actor {
        user_id: None,
        company_id: k.company_id.into(),
        role: Role::Admin,
        label: format!("api-key:{}", k.name),
        meta: meta.clone(),
    })
}
