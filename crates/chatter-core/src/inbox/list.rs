//! Reading the inbox: the conversation list with its filters and search, one conversation and
//! its messages, and marking a conversation read.

use super::*;

/// Filters of the conversation list.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListFilter {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    pub source: Option<SourceId>,
    /// open | closed | all (default open)
    pub status: Option<String>,
    /// mine | unassigned | unread
    pub only: Option<String>,
    /// Search in the customer's name and the messages' text.
    pub q: Option<String>,
    /// Only conversations carrying this label.
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    pub label: Option<Uuid>,
}

/// A row of the conversation list.
#[derive(Clone, Debug)]
pub struct ConversationRow {
    pub conversation: conversation::Model,
    pub contact: contact::Model,
    pub source_name: String,
    pub source_kind: SourceKind,
    /// Its labels, by name.
    pub labels: Vec<chatter_store::entity::label::Model>,
}

pub async fn list_conversations(
    core: &Core,
    actor: &Actor,
    f: &ListFilter,
    limit: u64,
) -> Result<Vec<ConversationRow>> {
    let convs = filtered(core, actor, f)
        .await?
        .order_by_desc(conversation::Column::LastMessageAt)
        // Messages stored in one group commit share a timestamp: the id keeps the order the
        // same from one page to the next.
        .order_by_desc(conversation::Column::Id)
        .limit(limit)
        .all(&core.read)
        .await?;
    rows_for(core, convs).await
}

/// The conversations of the list `f` that began before `after` (when it began, id), newest
/// first: pages whose order new messages and new conversations never shift (the API's
/// cursor pagination).
pub async fn list_conversations_after(
    core: &Core,
    actor: &Actor,
    f: &ListFilter,
    after: Option<(i64, Uuid)>,
    limit: u64,
) -> Result<Vec<ConversationRow>> {
    let mut q = filtered(core, actor, f).await?;
    if let Some((at, id)) = after {
        q = q.filter(
            Condition::any()
                .add(conversation::Column::CreatedAt.lt(at))
                .add(
                    Condition::all()
                        .add(conversation::Column::CreatedAt.eq(at))
                        .add(conversation::Column::Id.lt(id)),
                ),
        );
    }
    let convs = q
        .order_by_desc(conversation::Column::CreatedAt)
        .order_by_desc(conversation::Column::Id)
        .limit(limit)
        .all(&core.read)
        .await?;
    rows_for(core, convs).await
}

/// The company's conversations that pass the filters `f`.
async fn filtered(
    core: &Core,
    actor: &Actor,
    f: &ListFilter,
) -> Result<sea_orm::Select<conversation::Entity>> {
    actor.require(Permission::Read)?;
    let mut q =
        conversation::Entity::find().filter(conversation::Column::CompanyId.eq(actor.company_id));
    if let Some(s) = f.source {
        q = q.filter(conversation::Column::SourceId.eq(s));
    }
    match f.status.as_deref().unwrap_or("open") {
        "all" => {}
        "closed" => q = q.filter(conversation::Column::Status.eq(ConversationStatus::Closed)),
        _ => q = q.filter(conversation::Column::Status.eq(ConversationStatus::Open)),
    }
    match f.only.as_deref() {
        Some("mine") => {
            q = q.filter(conversation::Column::AssigneeId.eq(actor.user_id.unwrap_or_default()))
        }
        Some("unassigned") => q = q.filter(conversation::Column::AssigneeId.is_null()),
        Some("unread") => q = q.filter(conversation::Column::Unread.gt(0)),
        _ => {}
    }
    if let Some(l) = f.label {
        q = q.filter(conversation::Column::Id.in_subquery(super::labels::carrying(l)));
    }
    if let Some(text) = f.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let likes = case_variants(&text.replace(['%', '_'], ""));
        let mut names = Condition::any();
        for like in &likes {
            names = names
                .add(Expr::col(contact::Column::Name).like(like))
                .add(Expr::col(contact::Column::Username).like(like));
        }
        let by_name = contact::Entity::find()
            .filter(contact::Column::CompanyId.eq(actor.company_id))
            .filter(names)
            .select_only()
            .column(contact::Column::Id)
            .into_tuple::<Uuid>()
            .all(&core.read)
            .await?;
        // Message texts through the full-text index: any form of each word.
        let by_text =
            super::search::conversations_matching(core, actor.company_id, text, 500).await?;
        q = q.filter(
            Condition::any()
                .add(conversation::Column::ContactId.is_in(by_name))
                .add(conversation::Column::Id.is_in(by_text)),
        );
    }
    Ok(q)
}

/// `LIKE` patterns for a search that ignores case in any alphabet on both databases (SQLite's
/// `LIKE` folds ASCII only, PostgreSQL's folds nothing): the words as typed, in lower case, in
/// upper case and capitalised — «ольга» finds «Ольга», «доставка» finds «Доставка» and
/// «ДОСТАВКА». Mixed case inside a word («оЛьга») is not matched.
pub(super) fn case_variants(needle: &str) -> Vec<String> {
    let lower = needle.to_lowercase();
    let mut capital = String::with_capacity(lower.len());
    let mut start = true;
    for c in lower.chars() {
        if start && c.is_alphabetic() {
            capital.extend(c.to_uppercase());
        } else {
            capital.push(c);
        }
        start = !c.is_alphanumeric();
    }
    let first_only: String = {
        let mut it = lower.chars();
        match it.next() {
            Some(c) => c.to_uppercase().chain(it).collect(),
            None => String::new(),
        }
    };
    let mut out: Vec<String> = Vec::new();
    for v in [
        needle.to_owned(),
        lower.clone(),
        needle.to_uppercase(),
        capital,
        first_only,
    ] {
        let p = format!("%{v}%");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

pub(super) async fn rows_for(
    core: &Core,
    convs: Vec<conversation::Model>,
) -> Result<Vec<ConversationRow>> {
    let contact_ids: Vec<ContactId> = convs.iter().map(|c| c.contact_id).collect();
    let source_ids: Vec<SourceId> = convs.iter().map(|c| c.source_id).collect();
    let contacts = contact::Entity::find()
        .filter(contact::Column::Id.is_in(contact_ids))
        .all(&core.read)
        .await?;
    let sources = source::Entity::find()
        .filter(source::Column::Id.is_in(source_ids))
        .all(&core.read)
        .await?;
    let conv_ids: Vec<ConversationId> = convs.iter().map(|c| c.id).collect();
    let mut labels = super::labels::labels_of(&core.read, &conv_ids).await?;
    Ok(convs
        .into_iter()
        .filter_map(|c| {
            let contact = contacts.iter().find(|x| x.id == c.contact_id)?.clone();
            let s = sources.iter().find(|x| x.id == c.source_id)?;
            Some(ConversationRow {
                source_name: s.name.clone(),
                source_kind: s.kind,
                labels: labels.remove(&c.id).unwrap_or_default(),
                contact,
                conversation: c,
            })
        })
        .collect())
}

/// Several conversations of the actor's company at once (for rendering a batch of events).
pub async fn conversations_by_ids(
    core: &Core,
    actor: &Actor,
    ids: &[ConversationId],
) -> Result<Vec<ConversationRow>> {
    actor.require(Permission::Read)?;
    let convs = conversation::Entity::find()
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .filter(conversation::Column::Id.is_in(ids.iter().copied()))
        .all(&core.read)
        .await?;
    rows_for(core, convs).await
}

/// Several messages of the actor's company at once.
pub async fn messages_by_ids(
    core: &Core,
    actor: &Actor,
    ids: &[MessageId],
) -> Result<Vec<message::Model>> {
    actor.require(Permission::Read)?;
    Ok(message::Entity::find()
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .filter(message::Column::Id.is_in(ids.iter().copied()))
        .all(&core.read)
        .await?)
}

/// One conversation of the actor's company.
pub async fn get_conversation(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
) -> Result<ConversationRow> {
    actor.require(Permission::Read)?;
    let c = conversation::Entity::find_by_id(id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(&core.read)
        .await?
        .ok_or(CoreError::NotFound)?;
    rows_for(core, vec![c])
        .await?
        .pop()
        .ok_or(CoreError::NotFound)
}

/// The conversation's messages, oldest first (the last `limit`).
pub async fn messages(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    limit: u64,
) -> Result<Vec<message::Model>> {
    get_conversation(core, actor, conversation_id).await?;
    let mut ms = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .all(&core.read)
        .await?;
    ms.reverse();
    Ok(ms)
}

/// The conversation's messages stored after `after` (when stored, id), oldest first: pages
/// that new messages only ever extend at the end.
pub async fn messages_after(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    after: Option<(i64, MessageId)>,
    limit: u64,
) -> Result<Vec<message::Model>> {
    get_conversation(core, actor, conversation_id).await?;
    let mut q = message::Entity::find().filter(message::Column::ConversationId.eq(conversation_id));
    if let Some((at, id)) = after {
        q = q.filter(
            Condition::any().add(message::Column::CreatedAt.gt(at)).add(
                Condition::all()
                    .add(message::Column::CreatedAt.eq(at))
                    .add(message::Column::Id.gt(id)),
            ),
        );
    }
    Ok(q.order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .limit(limit)
        .all(&core.read)
        .await?)
}

pub async fn get_message(core: &Core, actor: &Actor, id: MessageId) -> Result<message::Model> {
    actor.require(Permission::Read)?;
    message::Entity::find_by_id(id)
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .one(&core.read)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Marks the conversation read (a manager opened it).
pub async fn mark_read(core: &Core, actor: &Actor, id: ConversationId) -> Result<()> {
    // Nothing unread (as of the read pool's view, which has every committed message): no
    // write, so opening a read conversation never waits for the writer.
    if get_conversation(core, actor, id).await?.conversation.unread == 0 {
        return Ok(());
    }
    let n = conversation::Entity::update_many()
        .col_expr(conversation::Column::Unread, Expr::value(0))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .filter(conversation::Column::Unread.gt(0))
        .exec(&core.db)
        .await?;
    if n.rows_affected > 0 {
        let txn = core.db.begin().await?;
        let mut pending = Pending::default();
        events::emit(
            &txn,
            &mut pending,
            actor.company_id,
            "conversation",
            serde_json::json!({"conversation_id": id}),
            core.now(),
        )
        .await?;
        txn.commit().await?;
        core.published(pending);
    }
    Ok(())
}

#[cfg(test)]
mod search_tests {
    use super::case_variants;

    #[test]
    fn a_search_covers_the_usual_cases_of_every_alphabet() {
        let v = case_variants("ольга смирнова");
        assert!(v.contains(&"%Ольга Смирнова%".to_string()), "{v:?}");
        assert!(v.contains(&"%Ольга смирнова%".to_string()), "{v:?}");
        assert!(v.contains(&"%ОЛЬГА СМИРНОВА%".to_string()), "{v:?}");
        let v = case_variants("Доставка");
        assert!(v.contains(&"%доставка%".to_string()), "{v:?}");
        assert_eq!(case_variants("").len(), 1);
    }
}
