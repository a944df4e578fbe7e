//! Bulk actions on a selection of conversations: assign (the assignee is notified of each, as
//! for one), add or remove a label, close. One
//! transaction for the whole selection; each conversation changed gets the audit entry and the
//! live event the single action writes. A manager acts on conversations that are his or nobody's;
//! one assigned to a colleague is skipped and counted ("not yours"), like an id that is not the
//! company's ("missing").

use super::labels::{change_labels, labels_by_ids};
use super::*;
use chatter_domain::Role;
use chatter_domain::UserId;

/// The most conversations one bulk action takes.
pub const BULK_MAX: usize = 500;

/// What a bulk action does to each conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkAction {
    /// To this member (None: nobody).
    Assign(Option<UserId>),
    AddLabel(Uuid),
    RemoveLabel(Uuid),
    Close,
}

/// What a bulk action did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Conversations the action applied to (already so counts: the selection is in that state).
    pub done: usize,
    /// Skipped: assigned to someone else, and the actor is a manager.
    pub not_yours: usize,
    /// Skipped: no such conversation in the company.
    pub missing: usize,
}

/// Whether `actor` may change `c` in bulk: owners and admins (and API keys) any, a manager his
/// own and unassigned ones.
pub fn may_act_on(actor: &Actor, c: &conversation::Model) -> bool {
    actor.role >= Role::Admin
        || c.assignee_id.is_none()
        || c.assignee_id == actor.user_id.map(UserId::uuid)
}

/// Applies `action` to the conversations `ids` the actor may change, in one transaction.
pub async fn bulk(
    core: &Core,
    actor: &Actor,
    ids: &[ConversationId],
    action: &BulkAction,
) -> Result<BulkOutcome> {
    actor.require(Permission::Reply)?;
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(CoreError::field("ids", "err.bulk_empty"));
    }
    if ids.len() > BULK_MAX {
        let mut e = FieldError::new("ids", "err.bulk_too_many");
        e.limit = Some(BULK_MAX);
        return Err(CoreError::Invalid(vec![e]));
    }
    let now = core.now();
    let txn = core.db.begin().await?;
    let label = match action {
        BulkAction::AddLabel(l) | BulkAction::RemoveLabel(l) => {
            labels_by_ids(&txn, actor.company_id, &[*l], "label").await?
        }
        BulkAction::Assign(Some(u)) => {
            check_assignee(&txn, actor, *u).await?;
            vec![]
        }
        _ => vec![],
    };
    let convs = conversation::Entity::find()
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .filter(conversation::Column::Id.is_in(ids.iter().copied()))
        .all(&txn)
        .await?;
    let mut out = BulkOutcome {
        missing: ids.len() - convs.len(),
        ..BulkOutcome::default()
    };
    let mut pending = Pending::default();
    for c in convs {
        if !may_act_on(actor, &c) {
            out.not_yours += 1;
            continue;
        }
        out.done += 1;
        let change = match action {
            BulkAction::Close if c.status == ConversationStatus::Open => {
                let mut m = c.clone().into_active_model();
                m.status = Set(ConversationStatus::Closed);
                m.updated_at = Set(now);
                m.update(&txn).await?;
                Some(("conversation.close", serde_json::json!({"bulk": true})))
            }
            BulkAction::Assign(who) if c.assignee_id != who.map(|u| u.0) => {
                let mut m = c.clone().into_active_model();
                m.assignee_id = Set(who.map(|u| u.0));
                m.updated_at = Set(now);
                m.update(&txn).await?;
                crate::crm::sync::outbox::on_assign(
                    &txn,
                    actor.company_id,
                    c.id,
                    who.map(|u| u.0),
                    now,
                )
                .await?;
                if let Some(u) = *who {
                    super::notify_assigned(&txn, &mut pending, actor, c.id, u, now).await?;
                }
                Some((
                    "conversation.assign",
                    serde_json::json!({"assignee": who, "bulk": true}),
                ))
            }
            BulkAction::AddLabel(_) | BulkAction::RemoveLabel(_) => {
                let adding = matches!(action, BulkAction::AddLabel(_));
                let (add, remove) = if adding {
                    (&label[..], &[][..])
                } else {
                    (&[][..], &label[..])
                };
                let ch = change_labels(&txn, actor.company_id, c.id, add, remove, now).await?;
                if ch.added.is_empty() && ch.removed.is_empty() {
                    None
                } else {
                    let mut d = ch.details();
                    d["bulk"] = serde_json::json!(true);
                    Some(("conversation.labels", d))
                }
            }
            _ => None,
        };
        if let Some((what, details)) = change {
            record_change(&txn, &mut pending, actor, c.id, what, details, now).await?;
        }
    }
    txn.commit().await?;
    core.published(pending);
    Ok(out)
}
