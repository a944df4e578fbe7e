//! Internal notes in a conversation's thread: written by the team for the team. They live in
//! their own table, which no customer-facing path reads (the send job, the API source's
//! outgoing webhooks and amoCRM's chat all read `messages`), so a note cannot reach the
//! customer. A note may mention teammates (`@Name` in its text, or their ids through the API);
//! the mentioned are notified, and the note goes to amoCRM as a note on the deal, prefixed with
//! its author's name, through the durable CRM outbox.

use super::*;
use crate::notifications::{self, Teammate};
use chatter_domain::UserId;
use chatter_store::entity::note;

/// A note to write: its text and the ids of teammates it mentions (besides `@Name`s in the
/// text); `author` names a member when an API key writes for one.
pub struct NewNote<'a> {
    pub text: &'a str,
    pub mentions: &'a [Uuid],
    pub author: Option<Uuid>,
}

/// A stored note as lists show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NoteView {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub author_id: Option<Uuid>,
    pub author_name: String,
    pub text: String,
    /// The mentioned members' ids.
    pub mentions: Vec<Uuid>,
    pub created_at: i64,
}

impl From<note::Model> for NoteView {
    fn from(n: note::Model) -> Self {
        Self {
            mentions: chatter_store::stored_json::read("notes.mentions", n.id, &n.mentions),
            id: n.id,
            conversation_id: n.conversation_id,
            author_id: n.author_id,
            author_name: n.author_name,
            text: n.text,
            created_at: n.created_at,
        }
    }
}

/// Who a note mentions: the ids given that belong to the company's members, and every member
/// whose name follows an `@` in the text. Never the author; someone outside the company is
/// ignored.
pub fn mentioned(text: &str, ids: &[Uuid], team: &[Teammate], author: Option<Uuid>) -> Vec<Uuid> {
    let lower = text.to_lowercase();
    let mut out: Vec<Uuid> = Vec::new();
    for t in team {
        let by_id = ids.contains(&t.user_id);
        let name = t.name.trim().to_lowercase();
        let by_name = !name.is_empty() && lower.contains(&format!("@{name}"));
        if (by_id || by_name) && Some(t.user_id) != author && !out.contains(&t.user_id) {
            out.push(t.user_id);
        }
    }
    out
}

/// Adds a note to a conversation of the actor's company. Only spaces: refused, nothing stored.
pub async fn add_note(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    new: NewNote<'_>,
) -> Result<NoteView> {
    actor.require(Permission::Reply)?;
    let conv = conversation::Entity::find_by_id(id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)?;
    let text = multi_line_text("text", new.text, limits::NOTE).map_err(|e| {
        if e.key == "err.required" {
            CoreError::field("text", "err.note_empty")
        } else {
            CoreError::Invalid(vec![e])
        }
    })?;
    let team = notifications::teammates(&core.db, actor.company_id).await?;
    let author_id = match (actor.user_id.map(UserId::uuid), new.author) {
        (Some(me), _) => Some(me),
        (None, Some(a)) => match team.iter().find(|t| t.user_id == a) {
            Some(t) if t.role.can(Permission::Reply) => Some(a),
            _ => return Err(CoreError::field("author_id", "err.not_a_member")),
        },
        (None, None) => None,
    };
    let author_name = match author_id {
        Some(a) => team
            .iter()
            .find(|t| t.user_id == a)
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        None => actor.label.clone(),
    };
    let mentions = mentioned(&text, new.mentions, &team, author_id);
    let now = core.now();
    let row = note::Model {
        id: Uuid::now_v7(),
        company_id: actor.company_id.uuid(),
        conversation_id: conv.id.0,
        author_id,
        author_name: author_name.clone(),
        text: text.clone(),
        mentions: serde_json::to_string(&mentions).unwrap_or_else(|_| "[]".into()),
        created_at: now,
    };
    let txn = core.db.begin().await?;
    note::Entity::insert(note::ActiveModel::from(row.clone()))
        .exec_without_returning(&txn)
        .await?;
    let mut pending = Pending::default();
    notifications::notify(
        &txn,
        &mut pending,
        notifications::New {
            company: conv.company_id,
            kind: notifications::MENTION,
            conversation: conv.id,
            note: Some(row.id),
            actor_name: Some(&author_name),
        },
        &mentions,
        now,
    )
    .await?;
    crate::crm::sync::outbox::enqueue_note(
        &txn,
        conv.company_id,
        conv.id,
        &format!("📝 {author_name}: {text}"),
        now,
    )
    .await?;
    events::emit(
        &txn,
        &mut pending,
        conv.company_id,
        "note",
        serde_json::json!({"conversation_id": conv.id, "note_id": row.id}),
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "note.add",
        &conv.id.to_string(),
        serde_json::json!({"note": row.id, "mentions": mentions}),
    )
    .await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(row.into())
}

/// The notes of a conversation, oldest first, after `after` (created at, id) when given.
pub async fn list_notes(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    after: Option<(i64, Uuid)>,
    limit: u64,
) -> Result<Vec<NoteView>> {
    actor.require(Permission::Read)?;
    conversation::Entity::find_by_id(id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)?;
    let mut q = note::Entity::find()
        .filter(note::Column::ConversationId.eq(id))
        .filter(note::Column::CompanyId.eq(actor.company_id));
    if let Some((at, nid)) = after {
        q = q.filter(
            Condition::any().add(note::Column::CreatedAt.gt(at)).add(
                Condition::all()
                    .add(note::Column::CreatedAt.eq(at))
                    .add(note::Column::Id.gt(nid)),
            ),
        );
    }
    Ok(q.order_by_asc(note::Column::CreatedAt)
        .order_by_asc(note::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?
        .into_iter()
        .map(NoteView::from)
        .collect())
}

/// Notes by id within the actor's company (the live stream's batch).
pub async fn notes_by_ids(core: &Core, actor: &Actor, ids: &[Uuid]) -> Result<Vec<NoteView>> {
    actor.require(Permission::Read)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(note::Entity::find()
        .filter(note::Column::Id.is_in(ids.iter().copied()))
        .filter(note::Column::CompanyId.eq(actor.company_id))
        .all(&core.db)
        .await?
        .into_iter()
        .map(NoteView::from)
        .collect())
}
