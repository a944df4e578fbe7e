//! The outbox: where the rest of core hands work to the CRM sync. Rows in `crm_outbox` are
//! written in the caller's transaction (a stored message, a manager's answer, a delivery status)
//! and a drain is queued for the company; nothing here calls amoCRM.

/// What the inbox may read of a deal (its names, for reply templates' variables), here at
/// the one seam between the inbox and the CRM.
pub use super::people::{deal_names, DealNames};

use super::drain::CrmDrain;
use crate::crm::integration::{Metadata, CONNECTED, TOKEN_INVALID};
use crate::jobs::{BackgroundJob, JobOptions};
use crate::{Core, Result};
use chatter_domain::routing::{Decision, Responsible};
use chatter_domain::{CompanyId, ConversationId, MessageId};
use chatter_store::entity::{conversation, crm_integration, user};
use chatter_store::stmt;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Value};
use std::collections::HashSet;
use uuid::Uuid;

// What an outbox row asks for (`crm_outbox.kind`) and the states a row can be in.
pub(super) const K_MESSAGE: &str = "message";
pub(super) const K_STATUS: &str = "status";
pub(super) const K_ASSIGN: &str = "assign";
/// The deal's responsible follows the conversation's assignee (`responsible`).
pub(super) const K_RESPONSIBLE: &str = "responsible";
/// The team changed a person (name, phone, e-mail) or merged two: payload `{"contact_id",
/// "link"}` (with `link`, the conversation's deal is moved onto the person's amoCRM contact).
pub(super) const K_CONTACT: &str = "contact";
/// A team's internal note, written as a note on the deal (payload `{"text"}`).
pub(super) const K_NOTE: &str = "note";
/// An auto-reply moves the deal to a stage: payload `{"pipeline_id", "status_id"}`.
pub(super) const K_STAGE: &str = "stage";

pub(super) const PENDING: &str = "pending";
pub(super) const FAILED: &str = "failed";

/// Queues the drain of `company_id`, due at `at`; queuing it again while one waits is a no-op
/// (dedup).
pub(super) async fn queue_drain(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    now: i64,
    at: i64,
) -> Result<()> {
    let drain = CrmDrain { company_id };
    let queued = drain
        .enqueue(conn, JobOptions::at(now).company(company_id).run_at(at))
        .await?;
    if queued.is_none() {
        // The key is taken. A drain that is running may have read the outbox before this
        // transaction's items commit, and its `done` may look again before they do: queue one
        // follow-up under a key of its own, so new work never waits for a wake-up that passed.
        let key = drain.dedup_key().unwrap_or_default();
        let running = conn
            .query_one(chatter_store::stmt(
                conn.get_database_backend(),
                "SELECT count(*) AS n FROM jobs WHERE dedup_key = $1 AND status = 'running'",
                vec![key.clone().into()],
            ))
            .await?
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        if running > 0 {
            drain
                .enqueue(
                    conn,
                    JobOptions::at(now)
                        .company(company_id)
                        .run_at(at)
                        .dedup(format!("{key}:next")),
                )
                .await?;
        }
    }
    Ok(())
}

/// The integration statuses under which work is queued (a revoked token holds it).
pub(super) fn queues_work(status: &str) -> bool {
    status == CONNECTED || status == TOKEN_INVALID
}

/// Queues messages for the CRM inside the caller's transaction: `(company, conversation,
/// message)` each. Companies without a connected CRM are skipped with one query.
pub async fn enqueue_messages(
    conn: &impl ConnectionTrait,
    items: &[(CompanyId, ConversationId, MessageId)],
    now: i64,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let companies: HashSet<Uuid> = items.iter().map(|i| i.0 .0).collect();
    let connected: HashSet<Uuid> = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.is_in(companies))
        .all(conn)
        .await?
        .into_iter()
        .filter(|i| queues_work(&i.status))
        .map(|i| i.company_id)
        .collect();
    let rows: Vec<&(CompanyId, ConversationId, MessageId)> = items
        .iter()
        .filter(|i| connected.contains(&i.0 .0))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    for chunk in rows.chunks(100) {
        let mut sql = String::from(
            "INSERT INTO crm_outbox (company_id, conversation_id, message_id, kind, payload, status, attempts, next_at, created_at) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        for (i, (company, conv, msg)) in chunk.iter().enumerate() {
            let b = i * 5;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, '{K_MESSAGE}', '{{}}', '{PENDING}', 0, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
            values.extend([
                (*company).into(),
                (*conv).into(),
                (*msg).into(),
                now.into(),
                now.into(),
            ]);
        }
        conn.execute(stmt(conn.get_database_backend(), &sql, values))
            .await?;
    }
    for company in connected {
        queue_drain(conn, company, now, now).await?;
    }
    Ok(())
}

/// Queues an internal note for the conversation's deal inside the caller's transaction
/// (companies without a connected CRM: nothing). `text` already names its author.
pub async fn enqueue_note(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    conversation_id: ConversationId,
    text: &str,
    now: i64,
) -> Result<()> {
    let connected = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(conn)
        .await?
        .is_some_and(|i| queues_work(&i.status));
    if !connected {
        return Ok(());
    }
    enqueue_item(
        conn,
        company_id,
        conversation_id,
        None,
        K_NOTE,
        serde_json::json!({ "text": text }),
        now,
    )
    .await
}

/// Queues moving the conversation's deal to `status_id` (of `pipeline_id`, else its own
/// pipeline) inside the caller's transaction; companies without a connected CRM: nothing.
/// Returns whether it was queued.
pub async fn enqueue_deal_stage(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    conversation_id: ConversationId,
    pipeline_id: Option<i64>,
    status_id: i64,
    now: i64,
) -> Result<bool> {
    let connected = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(conn)
        .await?
        .is_some_and(|i| queues_work(&i.status));
    if !connected {
        return Ok(false);
    }
    let payload = serde_json::json!({ "pipeline_id": pipeline_id, "status_id": status_id });
    enqueue_item(
        conn,
        company_id,
        conversation_id,
        None,
        K_STAGE,
        payload,
        now,
    )
    .await?;
    Ok(true)
}

/// The stages of the company's amoCRM pipelines as last synced: `(pipeline, stage)` ids, for
/// checking a "move the deal" action before it is saved. Empty without a connected CRM.
pub async fn known_stages(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
) -> Result<Vec<(i64, i64, String)>> {
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(conn)
        .await?
    else {
        return Ok(Vec::new());
    };
    let meta: Metadata =
        chatter_store::stored_json::read("crm_integrations.metadata", i.company_id, &i.metadata);
    Ok(meta
        .pipelines
        .iter()
        .flat_map(|p| {
            p.statuses
                .iter()
                .map(move |s| (p.id, s.id, format!("{} → {}", p.name, s.name)))
        })
        .collect())
}

pub(super) async fn enqueue_item(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    conversation_id: ConversationId,
    message_id: Option<MessageId>,
    kind: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO crm_outbox (company_id, conversation_id, message_id, kind, payload, status, attempts, next_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        vec![
            company_id.into(),
            conversation_id.into(),
            message_id.into(),
            kind.into(),
            payload.to_string().into(),
            now.into(),
        ],
    ))
    .await?;
    queue_drain(conn, company_id.0, now, now).await?;
    Ok(())
}

/// A manager answered from Chatter's inbox: mirror the answer, and when the deal waits for
/// "the first manager who answers", make them responsible (matched to amoCRM by email).
pub(crate) async fn on_reply(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    message_id: MessageId,
    author: Option<Uuid>,
    now: i64,
) -> Result<()> {
    enqueue_messages(conn, &[(conv.company_id, conv.id, message_id)], now).await?;
    match author {
        Some(a) => assign_first_answer(conn, conv, Answerer::Member(a), now).await,
        None => Ok(()),
    }
}

/// A conversation was assigned in Chatter (inside the caller's transaction): when the company
/// keeps one responsible person, the deal's responsible follows (see `sync::responsible`).
pub async fn on_assign(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    conversation_id: ConversationId,
    assignee: Option<Uuid>,
    now: i64,
) -> Result<()> {
    super::responsible::on_assign(conn, company_id, conversation_id, assignee, now).await
}

/// Who answered a customer.
pub(crate) enum Answerer<'a> {
    /// A member, in Chatter's inbox (matched to an amoCRM user by email).
    Member(Uuid),
    /// An amoCRM user, in amoCRM's chat (by their chat service id).
    CrmChatUser(&'a str),
}

/// When the conversation's deal waits for "whoever answers first" and has no responsible yet,
/// queues making the one who just answered responsible.
pub(super) async fn assign_first_answer(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    who: Answerer<'_>,
    now: i64,
) -> Result<()> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT decision, responsible_user_id FROM crm_conversations WHERE conversation_id = $1",
            vec![conv.id.into()],
        ))
        .await?;
    let first_to_answer = match &row {
        Some(r) => {
            r.try_get::<Option<i64>>("", "responsible_user_id")?
                .is_none()
                && r.try_get::<Option<String>>("", "decision")?
                    .and_then(|d| {
                        chatter_store::stored_json::read_opt::<Decision>(
                            "crm_conversations.decision",
                            conv.id,
                            Some(&d),
                        )
                    })
                    .is_some_and(|d| {
                        matches!(d.actions.responsible, Some(Responsible::FirstToAnswer))
                    })
        }
        None => false,
    };
    if !first_to_answer {
        return Ok(());
    }
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(conv.company_id))
        .one(conn)
        .await?
    else {
        return Ok(());
    };
    let meta: Metadata =
        chatter_store::stored_json::read("crm_integrations.metadata", i.company_id, &i.metadata);
    let crm_user = match who {
        Answerer::Member(author) => {
            let Some(u) = user::Entity::find_by_id(author).one(conn).await? else {
                return Ok(());
            };
            meta.users
                .iter()
                .find(|x| {
                    x.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(&u.email))
                })
                .map(|x| x.id)
        }
        Answerer::CrmChatUser(r) => meta
            .users
            .iter()
            .find(|x| x.chat_user_id.as_deref() == Some(r))
            .map(|x| x.id),
    };
    if let Some(id) = crm_user {
        enqueue_item(
            conn,
            conv.company_id,
            conv.id,
            None,
            K_ASSIGN,
            serde_json::json!({ "crm_user_id": id }),
            now,
        )
        .await?;
    }
    Ok(())
}

/// A message was delivered (or failed for good): when it was a manager's answer written in
/// amoCRM, tell amoCRM (§4.7).
pub(crate) async fn on_delivery(
    core: &Core,
    message_id: MessageId,
    error: Option<&str>,
    blocked: bool,
) -> Result<()> {
    let payload = |msgid: String| match error {
        None => serde_json::json!({ "msgid": msgid }),
        Some(e) => serde_json::json!({ "msgid": msgid, "error": e, "blocked": blocked }),
    };
    if queue_status(&core.db, message_id, payload, core.now()).await? {
        core.jobs_notify.notify_waiters();
    }
    Ok(())
}

/// What a provider reported about one of our messages after its send job had finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LateStatus<'a> {
    /// Failed after all (WhatsApp's closed 24-hour window arrives this way), with the reason.
    Failed(&'a str),
    Read,
}

/// A late delivery report of a manager's answer written in amoCRM, queued for amoCRM in the
/// transaction that stores the report (so it is not lost between the two).
pub(crate) async fn on_late_status(
    conn: &impl ConnectionTrait,
    message_id: MessageId,
    status: LateStatus<'_>,
    now: i64,
) -> Result<()> {
    let payload = |msgid: String| match status {
        LateStatus::Failed(e) => {
            serde_json::json!({ "msgid": msgid, "error": e, "blocked": false, "late": true })
        }
        LateStatus::Read => serde_json::json!({ "msgid": msgid, "read": true }),
    };
    queue_status(conn, message_id, payload, now).await?;
    Ok(())
}

/// Queues a delivery status for amoCRM when `message_id` is a manager's answer from amoCRM;
/// whether it was one.
async fn queue_status(
    conn: &impl ConnectionTrait,
    message_id: MessageId,
    payload: impl FnOnce(String) -> serde_json::Value,
    now: i64,
) -> Result<bool> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT m.company_id AS company_id, m.conversation_id AS conversation_id, c.remote_id AS remote_id \
             FROM crm_messages c JOIN messages m ON m.id = c.message_id WHERE c.message_id = $1 AND c.kind = 'reply'",
            vec![message_id.into()],
        ))
        .await?;
    let Some(r) = row else {
        return Ok(false);
    };
    let company: CompanyId = r.try_get("", "company_id")?;
    let conv: ConversationId = r.try_get("", "conversation_id")?;
    let msgid: String = r.try_get("", "remote_id")?;
    enqueue_item(
        conn,
        company,
        conv,
        Some(message_id),
        K_STATUS,
        payload(msgid),
        now,
    )
    .await?;
    Ok(true)
}

/// A person changed (`link = false`: their name, phone or e-mail) or merged (`link = true`):
/// queues amoCRM's side inside the caller's transaction. `conversations` are the person's
/// conversations, newest first; the item rides on one that has a deal (so it runs after the
/// deal exists, in the conversation's order), or on every one with a deal when linking. A
/// person with no deal yet needs nothing: their amoCRM contact will be made from what is stored.
pub async fn enqueue_contact_change(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    person: chatter_domain::ContactId,
    conversations: &[ConversationId],
    link: bool,
    now: i64,
) -> Result<()> {
    let connected = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(conn)
        .await?
        .is_some_and(|i| queues_work(&i.status));
    if !connected || conversations.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = conversations.iter().map(|c| c.0).collect();
    let with_deal: HashSet<Uuid> = chatter_store::entity::crm_conversation::Entity::find()
        .filter(chatter_store::entity::crm_conversation::Column::ConversationId.is_in(ids))
        .filter(chatter_store::entity::crm_conversation::Column::DealId.is_not_null())
        .all(conn)
        .await?
        .into_iter()
        .map(|c| c.conversation_id)
        .collect();
    let targets: Vec<ConversationId> = conversations
        .iter()
        .filter(|c| with_deal.contains(&c.0))
        .take(if link { usize::MAX } else { 1 })
        .copied()
        .collect();
    for conv in targets {
        enqueue_item(
            conn,
            company_id,
            conv,
            None,
            K_CONTACT,
            serde_json::json!({ "contact_id": person, "link": link }),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Two people became one (`identities`: every contact of the kept person, `kept` first): from
/// now on they use one amoCRM contact — the kept person's, else the other's — for new deals,
/// and the deals they already have are linked to it (queued, per conversation). The other
/// amoCRM contact stays in amoCRM, unused by Chatter.
pub async fn on_merge(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    identities: &[chatter_domain::ContactId],
    conversations: &[ConversationId],
    now: i64,
) -> Result<()> {
    use chatter_store::entity::crm_contact;
    let mapped: Vec<crm_contact::Model> = crm_contact::Entity::find()
        .filter(crm_contact::Column::ContactId.is_in(identities.iter().map(|c| c.0)))
        .all(conn)
        .await?;
    // The first identity with an amoCRM contact, in the order given (the kept person first).
    let remote = identities
        .iter()
        .find_map(|id| mapped.iter().find(|m| m.contact_id == id.0))
        .map(|m| m.remote_id);
    let Some(remote) = remote else {
        return Ok(());
    };
    for id in identities {
        conn.execute(stmt(
            conn.get_database_backend(),
            "INSERT INTO crm_contacts (contact_id, company_id, remote_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (contact_id) DO UPDATE SET remote_id = excluded.remote_id",
            vec![id.0.into(), company_id.into(), remote.into(), now.into()],
        ))
        .await?;
    }
    match identities.first() {
        Some(kept) => {
            enqueue_contact_change(conn, company_id, *kept, conversations, true, now).await
        }
        None => Ok(()),
    }
}
