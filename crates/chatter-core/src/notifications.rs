//! In-app notifications, stored per person with their read state: a new conversation (to every
//! member who can see it — the inbox shows every conversation of the company to every member
//! who may read), a mention in a note (to the mentioned) and an assignment (to the assignee).
//! Written in the transaction of the change that causes them, with one live event per batch
//! (`notification`, naming the people it is for), so open pages update their bell at commit.
//! Also each person's notification settings (browser notifications, the e-mail digest).

use crate::events::{self, Pending};
use crate::{Actor, Core, CoreError, Result};
use chatter_domain::{CompanyId, ConversationId, Permission, Role, UserId};
use chatter_store::entity::{
    contact, conversation, membership, notification, notification_setting, user,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use std::collections::HashMap;
use uuid::Uuid;

/// A customer wrote for the first time in a conversation.
pub const NEW_CONVERSATION: &str = "new_conversation";
/// A teammate mentioned the person in a note.
pub const MENTION: &str = "mention";
/// The conversation was assigned to the person by someone else.
pub const ASSIGNED: &str = "assigned";
/// An auto-reply rule with a "notify the team" action fired (`actor_name`: the rule).
pub const AUTO_REPLY: &str = "auto_reply";

/// The live event's kind.
pub const EVENT: &str = "notification";

/// A member of a company: id, name, role.
pub struct Teammate {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
}

/// The members of a company, in the order they joined.
pub async fn teammates(
    conn: &impl ConnectionTrait,
    company: chatter_domain::CompanyId,
) -> Result<Vec<Teammate>> {
    let ms = membership::Entity::find()
        .filter(membership::Column::CompanyId.eq(company))
        .order_by_asc(membership::Column::CreatedAt)
        .all(conn)
        .await?;
    let ids: Vec<Uuid> = ms.iter().map(|m| m.user_id).collect();
    let names: HashMap<Uuid, String> = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    Ok(ms
        .into_iter()
        .filter_map(|m| {
            Some(Teammate {
                user_id: m.user_id,
                name: names.get(&m.user_id)?.clone(),
                role: Role::parse(&m.role)?,
            })
        })
        .collect())
}

/// One notification to write.
pub(crate) struct New<'a> {
    pub company: CompanyId,
    pub kind: &'static str,
    pub conversation: ConversationId,
    pub note: Option<Uuid>,
    pub actor_name: Option<&'a str>,
}

/// Writes `n` for each of `users` inside the caller's transaction, with one live event.
pub(crate) async fn notify(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    n: New<'_>,
    users: &[Uuid],
    now: i64,
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let rows = users.iter().map(|u| notification::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(n.company.0),
        user_id: Set(*u),
        kind: Set(n.kind.to_string()),
        conversation_id: Set(n.conversation.0),
        note_id: Set(n.note),
        actor_name: Set(n.actor_name.map(str::to_owned)),
        created_at: Set(now),
        read_at: Set(None),
    });
    notification::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    events::emit(
        conn,
        pending,
        n.company,
        EVENT,
        serde_json::json!({"conversation_id": n.conversation, "user_ids": users}),
        now,
    )
    .await?;
    Ok(())
}

/// New conversations: everyone who can see them is told, inside the storing transaction.
pub(crate) async fn on_new_conversations(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    convs: &[(CompanyId, ConversationId)],
    now: i64,
) -> Result<()> {
    let mut readers: HashMap<CompanyId, Vec<Uuid>> = HashMap::new();
    for (company, conv) in convs {
        if !readers.contains_key(company) {
            let who = teammates(conn, *company)
                .await?
                .into_iter()
                .filter(|t| t.role.can(Permission::Read))
                .map(|t| t.user_id)
                .collect();
            readers.insert(*company, who);
        }
        let n = New {
            company: *company,
            kind: NEW_CONVERSATION,
            conversation: *conv,
            note: None,
            actor_name: None,
        };
        notify(conn, pending, n, &readers[company], now).await?;
    }
    Ok(())
}

/// A notification as a person's list shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Item {
    pub id: Uuid,
    pub kind: String,
    pub conversation_id: Uuid,
    /// Who the conversation is with (the customer's name, or the group's title).
    pub conversation_title: String,
    pub note_id: Option<Uuid>,
    /// The teammate who mentioned or assigned.
    pub actor_name: Option<String>,
    pub created_at: i64,
    pub read: bool,
}

/// Whose notifications: the signed-in member, or (an API key) the member named.
pub async fn person(core: &Core, actor: &Actor, user_id: Option<Uuid>) -> Result<Uuid> {
    actor.require(Permission::Read)?;
    match (actor.user_id.map(UserId::uuid), user_id) {
        (Some(me), None) => Ok(me),
        (Some(me), Some(u)) if u == me => Ok(me),
        (Some(_), Some(_)) => Err(CoreError::Forbidden),
        (None, None) => Err(CoreError::field("user_id", "err.required")),
        (None, Some(u)) => {
            let member = membership::Entity::find_by_id((actor.company_id.uuid(), u))
                .one(&core.db)
                .await?;
            match member {
                Some(_) => Ok(u),
                None => Err(CoreError::field("user_id", "err.not_a_member")),
            }
        }
    }
}

/// The person's notifications, newest first, after `before` (created at, id) when given.
pub async fn list(
    core: &Core,
    actor: &Actor,
    user_id: Uuid,
    before: Option<(i64, Uuid)>,
    limit: u64,
) -> Result<Vec<Item>> {
    let mut q = notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::CompanyId.eq(actor.company_id));
    if let Some((at, id)) = before {
        q = q.filter(
            Condition::any()
                .add(notification::Column::CreatedAt.lt(at))
                .add(
                    Condition::all()
                        .add(notification::Column::CreatedAt.eq(at))
                        .add(notification::Column::Id.lt(id)),
                ),
        );
    }
    let rows = q
        .order_by_desc(notification::Column::CreatedAt)
        .order_by_desc(notification::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?;
    let conv_ids: Vec<Uuid> = rows.iter().map(|r| r.conversation_id).collect();
    let convs = conversation::Entity::find()
        .filter(conversation::Column::Id.is_in(conv_ids))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .all(&core.db)
        .await?;
    let contact_ids: Vec<Uuid> = convs.iter().map(|c| c.contact_id.0).collect();
    let names: HashMap<Uuid, String> = contact::Entity::find()
        .filter(contact::Column::Id.is_in(contact_ids))
        .all(&core.db)
        .await?
        .into_iter()
        .map(|c| (c.id.0, c.name))
        .collect();
    let titles: HashMap<Uuid, String> = convs
        .into_iter()
        .map(|c| {
            let t = c
                .title
                .clone()
                .or_else(|| names.get(&c.contact_id.0).cloned())
                .unwrap_or_default();
            (c.id.0, t)
        })
        .collect();
    Ok(rows
        .into_iter()
        .map(|r| Item {
            id: r.id,
            conversation_title: titles.get(&r.conversation_id).cloned().unwrap_or_default(),
            kind: r.kind,
            conversation_id: r.conversation_id,
            note_id: r.note_id,
            actor_name: r.actor_name,
            created_at: r.created_at,
            read: r.read_at.is_some(),
        })
        .collect())
}

/// How many of the person's notifications are unread.
pub async fn unread_count(
    conn: &impl ConnectionTrait,
    company: CompanyId,
    user_id: Uuid,
) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::CompanyId.eq(company))
        .filter(notification::Column::ReadAt.is_null())
        .count(conn)
        .await?)
}

/// Marks the person's notifications read: `ids` (others' and unknown ids are ignored), or
/// all of them. Returns how many changed; their other open pages hear of it live.
pub async fn mark_read(
    core: &Core,
    actor: &Actor,
    user_id: Uuid,
    ids: Option<&[Uuid]>,
) -> Result<u64> {
    let now = core.now();
    let txn = core.db.begin().await?;
    let mut q = notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(now))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::CompanyId.eq(actor.company_id))
        .filter(notification::Column::ReadAt.is_null());
    if let Some(ids) = ids {
        q = q.filter(notification::Column::Id.is_in(ids.iter().copied()));
    }
    let n = q.exec(&txn).await?.rows_affected;
    let mut pending = Pending::default();
    if n > 0 {
        events::emit(
            &txn,
            &mut pending,
            actor.company_id,
            EVENT,
            serde_json::json!({"user_ids": [user_id], "read": true}),
            now,
        )
        .await?;
    }
    txn.commit().await?;
    core.published(pending);
    Ok(n)
}

/// Marks read the person's notifications about one conversation (they opened it).
pub async fn read_conversation(
    core: &Core,
    actor: &Actor,
    conversation: ConversationId,
) -> Result<()> {
    let Some(me) = actor.user_id.map(UserId::uuid) else {
        return Ok(());
    };
    let ids: Vec<Uuid> = notification::Entity::find()
        .filter(notification::Column::UserId.eq(me))
        .filter(notification::Column::CompanyId.eq(actor.company_id))
        .filter(notification::Column::ConversationId.eq(conversation))
        .filter(notification::Column::ReadAt.is_null())
        .select_only()
        .column(notification::Column::Id)
        .into_tuple()
        .all(&core.read)
        .await?;
    if !ids.is_empty() {
        mark_read(core, actor, me, Some(&ids)).await?;
    }
    Ok(())
}

/// A person's notification settings in their current company.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// Browser notifications and a sound while the tab is hidden.
    pub browser: bool,
    /// The daily e-mail digest of unanswered conversations.
    pub digest: bool,
}

pub async fn settings(
    conn: &impl ConnectionTrait,
    company: Uuid,
    user_id: Uuid,
) -> Result<Settings> {
    Ok(notification_setting::Entity::find_by_id((company, user_id))
        .one(conn)
        .await?
        .map(|s| Settings {
            browser: s.browser,
            digest: s.digest,
        })
        .unwrap_or_default())
}

/// Saves the signed-in person's settings in their current company.
pub async fn save_settings(core: &Core, actor: &Actor, s: Settings) -> Result<()> {
    let me = actor.user()?.uuid();
    let now = core.now();
    let txn = core.db.begin().await?;
    notification_setting::Entity::insert(notification_setting::ActiveModel {
        company_id: Set(actor.company_id.uuid()),
        user_id: Set(me),
        browser: Set(s.browser),
        digest: Set(s.digest),
        digest_sent_on: Set(None),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            notification_setting::Column::CompanyId,
            notification_setting::Column::UserId,
        ])
        .update_columns([
            notification_setting::Column::Browser,
            notification_setting::Column::Digest,
            notification_setting::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    crate::audit::record(
        &txn,
        actor,
        now,
        "profile.notifications",
        &me.to_string(),
        serde_json::json!({"browser": s.browser, "digest": s.digest}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
