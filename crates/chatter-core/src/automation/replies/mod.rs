//! Auto-replies (requirement R5.3): the company's ordered rules (`rules`: list, create, change,
//! move, turn on and off, delete, each audited), where they run after a customer's message is
//! stored (`trigger`: a cheap "has this company enabled rules" check in the storing
//! transaction, then a typed job), what they do (`run`: triggers, limits, the loop guard, the
//! actions, the "no answer" timer) and the dry run against past conversations (`dry_run`).

pub mod dry_run;
mod outgoing;
pub mod run;
pub mod trigger;

use crate::{audit, Actor, Core, CoreError, Result};
use chatter_domain::auto_reply::{Action, AutoReply, Matcher};
use chatter_domain::{CompanyId, Permission, Role};
use chatter_store::entity::{auto_reply, label, membership, reply_template, source};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait,
};
use uuid::Uuid;

/// A stored rule as the pages and the API show it.
#[derive(Clone, Debug)]
pub struct RuleView {
    pub id: Uuid,
    pub position: i64,
    pub rule: AutoReply,
    pub updated_at: i64,
}

fn view(row: auto_reply::Model) -> Option<RuleView> {
    let rule: AutoReply = chatter_store::stored_json::read_opt(
        "auto_replies.rule",
        format_args!("{}", row.id),
        Some(&row.rule),
    )?;
    Some(RuleView {
        id: row.id,
        position: row.position,
        rule,
        updated_at: row.updated_at,
    })
}

/// The company's rules in order (a rule whose JSON does not read is logged and left out).
pub(crate) async fn company_rules(
    conn: &impl ConnectionTrait,
    company: CompanyId,
) -> Result<Vec<RuleView>> {
    Ok(auto_reply::Entity::find()
        .filter(auto_reply::Column::CompanyId.eq(company))
        .order_by_asc(auto_reply::Column::Position)
        .order_by_asc(auto_reply::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .filter_map(view)
        .collect())
}

/// The company's rules, in order.
pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<RuleView>> {
    actor.require(Permission::Read)?;
    company_rules(&core.db, actor.company()).await
}

async fn row(conn: &impl ConnectionTrait, actor: &Actor, id: Uuid) -> Result<auto_reply::Model> {
    auto_reply::Entity::find_by_id(id)
        .filter(auto_reply::Column::CompanyId.eq(actor.company()))
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)
}

/// One rule of the actor's company.
pub async fn get(core: &Core, actor: &Actor, id: Uuid) -> Result<RuleView> {
    actor.require(Permission::Read)?;
    view(row(&core.db, actor, id).await?).ok_or(CoreError::NotFound)
}

/// Checks a rule as it would be saved: its own fields (`AutoReply::check`), then every id it
/// names belongs to the company (sources, people who may reply, labels). All errors at once.
pub async fn checked(
    conn: &impl ConnectionTrait,
    company: CompanyId,
    rule: &AutoReply,
) -> Result<Matcher> {
    let mut errs = match rule.check() {
        Ok(_) => Vec::new(),
        Err(e) => e,
    };
    let field = |f, k| chatter_domain::FieldError::new(f, k);
    if !rule.sources.is_empty() {
        let n = source::Entity::find()
            .filter(source::Column::CompanyId.eq(company))
            .filter(source::Column::Id.is_in(rule.sources.iter().copied()))
            .all(conn)
            .await?
            .len();
        if n != dedup(&rule.sources).len() {
            errs.push(field("sources", "err.auto_source_unknown"));
        }
    }
    for a in &rule.actions {
        match a {
            Action::Assign { users } | Action::Notify { users, .. } => {
                let members = membership::Entity::find()
                    .filter(membership::Column::CompanyId.eq(company.0))
                    .filter(membership::Column::UserId.is_in(users.iter().copied()))
                    .all(conn)
                    .await?;
                let assign = matches!(a, Action::Assign { .. });
                let ok = members
                    .iter()
                    .filter(|m| {
                        !assign || Role::parse(&m.role).is_some_and(|r| r.can(Permission::Reply))
                    })
                    .count();
                if ok != dedup(users).len() {
                    let f = if assign { "assign" } else { "notify" };
                    errs.push(field(f, "err.auto_user_unknown"));
                }
            }
            Action::AddLabels { labels } => {
                let n = label::Entity::find()
                    .filter(label::Column::CompanyId.eq(company.0))
                    .filter(label::Column::Id.is_in(labels.iter().copied()))
                    .all(conn)
                    .await?
                    .len();
                if n != dedup(labels).len() {
                    errs.push(field("labels", "err.label_unknown"));
                }
            }
            Action::MoveDeal {
                pipeline_id,
                status_id,
            } => {
                let stages = crate::crm::sync::outbox::known_stages(conn, company).await?;
                let known = stages
                    .iter()
                    .any(|(p, s, _)| s == status_id && pipeline_id.is_none_or(|x| x == *p));
                if !known {
                    errs.push(field("stage", "err.auto_stage_unknown"));
                }
            }
            Action::Reply {
                template_id: Some(t),
                ..
            } => {
                // Only a company-wide template: a member's own could vanish with the member.
                let known = reply_template::Entity::find_by_id(*t)
                    .filter(reply_template::Column::CompanyId.eq(company.0))
                    .filter(reply_template::Column::OwnerId.is_null())
                    .one(conn)
                    .await?
                    .is_some();
                if !known {
                    errs.push(field("template", "err.auto_template_unknown"));
                }
            }
            Action::Reply { .. } => {}
        }
    }
    errs.dedup_by(|a, b| a.field == b.field && a.key == b.key);
    match rule.check() {
        Ok(m) if errs.is_empty() => Ok(m),
        _ => Err(CoreError::Invalid(errs)),
    }
}

fn dedup(ids: &[Uuid]) -> Vec<Uuid> {
    let mut v = ids.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The rule as stored: trimmed name and texts, ids once each.
fn tidy(mut rule: AutoReply) -> AutoReply {
    rule.name = rule.name.trim().to_owned();
    rule.sources = dedup(&rule.sources);
    for a in &mut rule.actions {
        match a {
            Action::Reply {
                text,
                whatsapp_template,
                ..
            } => {
                *text = text.trim().to_owned();
                if let Some(w) = whatsapp_template {
                    w.name = w.name.trim().to_owned();
                    w.language = w.language.trim().to_owned();
                    for p in &mut w.params {
                        *p = p.trim().to_owned();
                    }
                }
            }
            Action::AddLabels { labels } => *labels = dedup(labels),
            Action::Notify { users, .. } => *users = dedup(users),
            Action::Assign { .. } | Action::MoveDeal { .. } => {}
        }
    }
    rule
}

fn json(rule: &AutoReply) -> Result<String> {
    serde_json::to_string(rule).map_err(|e| CoreError::Internal(e.to_string()))
}

/// Adds a rule at the end of the order.
pub async fn create(core: &Core, actor: &Actor, rule: AutoReply) -> Result<RuleView> {
    actor.require(Permission::Manage)?;
    let rule = tidy(rule);
    let now = core.now();
    let txn = core.db.begin().await?;
    checked(&txn, actor.company(), &rule).await?;
    let last = company_rules(&txn, actor.company())
        .await?
        .last()
        .map_or(0, |r| r.position);
    let id = Uuid::now_v7();
    auto_reply::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company()),
        position: Set(last + 1),
        enabled: Set(rule.enabled),
        name: Set(rule.name.clone()),
        rule: Set(json(&rule)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let details = serde_json::to_value(&rule).unwrap_or_default();
    audit::record(
        &txn,
        actor,
        now,
        "auto_reply.create",
        &id.to_string(),
        details,
    )
    .await?;
    txn.commit().await?;
    trigger::forget(actor.company());
    get(core, actor, id).await
}

/// Replaces a rule (its place in the order stays).
pub async fn update(core: &Core, actor: &Actor, id: Uuid, rule: AutoReply) -> Result<RuleView> {
    actor.require(Permission::Manage)?;
    let rule = tidy(rule);
    let now = core.now();
    let txn = core.db.begin().await?;
    let r = row(&txn, actor, id).await?;
    checked(&txn, actor.company(), &rule).await?;
    let mut am = r.into_active_model();
    am.enabled = Set(rule.enabled);
    am.name = Set(rule.name.clone());
    am.rule = Set(json(&rule)?);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    let details = serde_json::to_value(&rule).unwrap_or_default();
    audit::record(
        &txn,
        actor,
        now,
        "auto_reply.update",
        &id.to_string(),
        details,
    )
    .await?;
    txn.commit().await?;
    trigger::forget(actor.company());
    get(core, actor, id).await
}

/// Turns a rule on or off.
pub async fn set_enabled(core: &Core, actor: &Actor, id: Uuid, on: bool) -> Result<RuleView> {
    actor.require(Permission::Manage)?;
    let mut v = get(core, actor, id).await?;
    v.rule.enabled = on;
    update(core, actor, id, v.rule).await
}

/// Moves a rule one place up (`up`) or down in the order; at either end nothing changes.
pub async fn move_rule(core: &Core, actor: &Actor, id: Uuid, up: bool) -> Result<()> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let rules = company_rules(&txn, actor.company()).await?;
    let at = rules
        .iter()
        .position(|r| r.id == id)
        .ok_or(CoreError::NotFound)?;
    let other = if up { at.checked_sub(1) } else { Some(at + 1) };
    let Some(other) = other.filter(|o| *o < rules.len()) else {
        return Ok(());
    };
    // Positions renumbered 1..n, with the two swapped.
    let mut order: Vec<Uuid> = rules.iter().map(|r| r.id).collect();
    order.swap(at, other);
    for (i, rid) in order.iter().enumerate() {
        auto_reply::Entity::update_many()
            .col_expr(auto_reply::Column::Position, Expr::value(i as i64 + 1))
            .filter(auto_reply::Column::Id.eq(*rid))
            .exec(&txn)
            .await?;
    }
    let details = serde_json::json!({ "up": up });
    audit::record(
        &txn,
        actor,
        now,
        "auto_reply.move",
        &id.to_string(),
        details,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Deletes a rule (what it did stays recorded on the conversations; its pending timers find
/// it gone and do nothing).
pub async fn delete(core: &Core, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let r = row(&txn, actor, id).await?;
    auto_reply::Entity::delete_by_id(id).exec(&txn).await?;
    let details = serde_json::json!({ "name": r.name });
    audit::record(
        &txn,
        actor,
        now,
        "auto_reply.delete",
        &id.to_string(),
        details,
    )
    .await?;
    txn.commit().await?;
    trigger::forget(actor.company());
    Ok(())
}
