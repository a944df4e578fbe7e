//! Labels: the company's coloured labels (owners and admins keep the set) and the labels on a
//! conversation (anyone who may reply changes them). A conversation's change is audited and
//! sent live like assigning or closing it, in the same transaction.

use super::*;
use chatter_store::entity::{conversation_label, label};
use std::collections::HashMap;

/// The palette a label's colour is chosen from (shown by CSS class `label-<colour>`).
pub const COLORS: [&str; 8] = [
    "gray", "red", "orange", "yellow", "green", "teal", "blue", "purple",
];

/// The longest label name, in characters.
pub const NAME_MAX: usize = 40;

/// The company's labels, by name.
pub async fn list_labels(core: &Core, actor: &Actor) -> Result<Vec<label::Model>> {
    actor.require(Permission::Read)?;
    company_labels(&core.read, actor.company_id).await
}

async fn company_labels(
    conn: &impl ConnectionTrait,
    company: chatter_domain::CompanyId,
) -> Result<Vec<label::Model>> {
    let mut ls = label::Entity::find()
        .filter(label::Column::CompanyId.eq(company))
        .all(conn)
        .await?;
    ls.sort_by_key(|l| l.name.to_lowercase());
    Ok(ls)
}

/// One label of the actor's company.
pub async fn get_label(core: &Core, actor: &Actor, id: Uuid) -> Result<label::Model> {
    actor.require(Permission::Read)?;
    label::Entity::find_by_id(id)
        .filter(label::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// A label's name and colour as given, checked: 1 to 40 characters after trimming, one line
/// without bidi controls, not a name another label of the company has (in any case), a colour
/// of the palette.
fn checked(
    name: Option<&str>,
    color: Option<&str>,
    others: &[label::Model],
) -> Result<(Option<String>, Option<String>)> {
    let mut errs = Vec::new();
    let name = name.map(|n| n.trim().to_owned());
    if let Some(n) = &name {
        if n.is_empty() {
            errs.push(FieldError::new("name", "err.label_name_required"));
        } else if n.chars().count() > NAME_MAX {
            let mut e = FieldError::new("name", "err.label_name_too_long");
            e.limit = Some(NAME_MAX);
            errs.push(e);
        } else if n.chars().any(char::is_control) {
            errs.push(FieldError::new("name", "err.control_chars"));
        } else if n.chars().any(chatter_domain::text::is_bidi_control) {
            // They would turn the inbox's text around the label.
            errs.push(FieldError::new("name", "err.bidi_chars"));
        } else if others
            .iter()
            .any(|o| o.name.to_lowercase() == n.to_lowercase())
        {
            errs.push(FieldError::new("name", "err.label_name_taken"));
        }
    }
    if let Some(c) = color {
        if !COLORS.contains(&c) {
            errs.push(FieldError::new("color", "err.label_color_invalid"));
        }
    }
    if errs.is_empty() {
        Ok((name, color.map(str::to_owned)))
    } else {
        Err(CoreError::Invalid(errs))
    }
}

/// Creates a label (owners and admins).
pub async fn create_label(
    core: &Core,
    actor: &Actor,
    name: &str,
    color: &str,
) -> Result<label::Model> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let others = company_labels(&txn, actor.company_id).await?;
    let (name, color) = checked(Some(name), Some(color), &others)?;
    let m = label::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(actor.company_id.uuid()),
        name: Set(name.unwrap_or_default()),
        color: Set(color.unwrap_or_default()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let details = serde_json::json!({"name": m.name, "color": m.color});
    audit::record(&txn, actor, now, "label.create", &m.id.to_string(), details).await?;
    txn.commit().await?;
    Ok(m)
}

/// Renames and/or recolours a label (owners and admins).
pub async fn update_label(
    core: &Core,
    actor: &Actor,
    id: Uuid,
    name: Option<&str>,
    color: Option<&str>,
) -> Result<label::Model> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let all = company_labels(&txn, actor.company_id).await?;
    let Some(old) = all.iter().find(|l| l.id == id).cloned() else {
        return Err(CoreError::NotFound);
    };
    let others: Vec<label::Model> = all.into_iter().filter(|l| l.id != id).collect();
    let (name, color) = checked(name, color, &others)?;
    let mut m = old.clone().into_active_model();
    if let Some(n) = name {
        m.name = Set(n);
    }
    if let Some(c) = color {
        m.color = Set(c);
    }
    let m = m.update(&txn).await?;
    let details = serde_json::json!({
        "from": {"name": old.name, "color": old.color},
        "to": {"name": m.name, "color": m.color},
    });
    audit::record(&txn, actor, now, "label.update", &id.to_string(), details).await?;
    // Open inboxes show the label's new name and colour on the rows that carry it.
    let carriers = carriers_of(&txn, id).await?;
    let pending = touched(&txn, actor, &carriers, now).await?;
    txn.commit().await?;
    core.published(pending);
    Ok(m)
}

/// Deletes a label and takes it off every conversation (owners and admins).
pub async fn delete_label(core: &Core, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let l = label::Entity::find_by_id(id)
        .filter(label::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let carriers = carriers_of(&txn, id).await?;
    conversation_label::Entity::delete_many()
        .filter(conversation_label::Column::LabelId.eq(id))
        .exec(&txn)
        .await?;
    label::Entity::delete_by_id(id).exec(&txn).await?;
    let details = serde_json::json!({"name": l.name, "conversations": carriers.len()});
    audit::record(&txn, actor, now, "label.delete", &id.to_string(), details).await?;
    let pending = touched(&txn, actor, &carriers, now).await?;
    txn.commit().await?;
    core.published(pending);
    Ok(())
}

async fn carriers_of(conn: &impl ConnectionTrait, label: Uuid) -> Result<Vec<Uuid>> {
    Ok(conversation_label::Entity::find()
        .filter(conversation_label::Column::LabelId.eq(label))
        .select_only()
        .column(conversation_label::Column::ConversationId)
        .into_tuple::<Uuid>()
        .all(conn)
        .await?)
}

/// Live events for conversations whose rows look different now.
async fn touched(
    txn: &sea_orm::DatabaseTransaction,
    actor: &Actor,
    convs: &[Uuid],
    now: i64,
) -> Result<Pending> {
    let mut pending = Pending::default();
    for c in convs {
        let payload = serde_json::json!({"conversation_id": c});
        events::emit(
            txn,
            &mut pending,
            actor.company_id,
            "conversation",
            payload,
            now,
        )
        .await?;
    }
    Ok(pending)
}

/// The labels of each of `convs`, by name.
pub(super) async fn labels_of(
    conn: &impl ConnectionTrait,
    convs: &[ConversationId],
) -> Result<HashMap<ConversationId, Vec<label::Model>>> {
    let mut out: HashMap<ConversationId, Vec<label::Model>> = HashMap::new();
    if convs.is_empty() {
        return Ok(out);
    }
    let links = conversation_label::Entity::find()
        .filter(conversation_label::Column::ConversationId.is_in(convs.iter().map(|c| c.0)))
        .all(conn)
        .await?;
    if links.is_empty() {
        return Ok(out);
    }
    let mut ids: Vec<Uuid> = links.iter().map(|l| l.label_id).collect();
    ids.sort();
    ids.dedup();
    let labels = label::Entity::find()
        .filter(label::Column::Id.is_in(ids))
        .all(conn)
        .await?;
    for link in links {
        if let Some(l) = labels.iter().find(|l| l.id == link.label_id) {
            out.entry(ConversationId(link.conversation_id))
                .or_default()
                .push(l.clone());
        }
    }
    for ls in out.values_mut() {
        ls.sort_by_key(|l| l.name.to_lowercase());
    }
    Ok(out)
}

/// The conversations carrying `label` (for the list's filter).
pub(super) fn carrying(label: Uuid) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(conversation_label::Column::ConversationId)
        .from(conversation_label::Entity)
        .and_where(Expr::col(conversation_label::Column::LabelId).eq(label))
        .to_owned()
}

/// What changing a conversation's labels did: the names added and removed.
#[derive(Debug, Default)]
pub(super) struct LabelChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl LabelChange {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
    pub(super) fn details(&self) -> serde_json::Value {
        serde_json::json!({"added": self.added, "removed": self.removed})
    }
}

/// Company labels `ids` (each once), or a field error on `field` naming an unknown one.
pub(super) async fn labels_by_ids(
    conn: &impl ConnectionTrait,
    company: chatter_domain::CompanyId,
    ids: &[Uuid],
    field: &'static str,
) -> Result<Vec<label::Model>> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let found = label::Entity::find()
        .filter(label::Column::CompanyId.eq(company))
        .filter(label::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    if found.len() != ids.len() {
        return Err(CoreError::field(field, "err.label_unknown"));
    }
    Ok(found)
}

/// Puts on `add` and takes off `remove` (labels of the conversation's company), in `conn`.
pub(super) async fn change_labels(
    conn: &impl ConnectionTrait,
    company: chatter_domain::CompanyId,
    id: ConversationId,
    add: &[label::Model],
    remove: &[label::Model],
    now: i64,
) -> Result<LabelChange> {
    let on: Vec<Uuid> = conversation_label::Entity::find()
        .filter(conversation_label::Column::ConversationId.eq(id.0))
        .select_only()
        .column(conversation_label::Column::LabelId)
        .into_tuple::<Uuid>()
        .all(conn)
        .await?;
    let mut change = LabelChange::default();
    for l in add.iter().filter(|l| !on.contains(&l.id)) {
        conversation_label::ActiveModel {
            conversation_id: Set(id.0),
            label_id: Set(l.id),
            company_id: Set(company.uuid()),
            created_at: Set(now),
        }
        .insert(conn)
        .await?;
        change.added.push(l.name.clone());
    }
    let gone: Vec<&label::Model> = remove.iter().filter(|l| on.contains(&l.id)).collect();
    if !gone.is_empty() {
        conversation_label::Entity::delete_many()
            .filter(conversation_label::Column::ConversationId.eq(id.0))
            .filter(conversation_label::Column::LabelId.is_in(gone.iter().map(|l| l.id)))
            .exec(conn)
            .await?;
        change.removed = gone.into_iter().map(|l| l.name.clone()).collect();
    }
    Ok(change)
}

/// Puts the company labels `ids` on `conv` inside the caller's transaction (labels gone
/// since are passed over): what an auto-reply does. Returns the names put on.
pub async fn add_labels(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    ids: &[Uuid],
    now: i64,
) -> Result<Vec<String>> {
    let company = conv.company_id;
    let wanted: Vec<label::Model> = company_labels(conn, company)
        .await?
        .into_iter()
        .filter(|l| ids.contains(&l.id))
        .collect();
    Ok(change_labels(conn, company, conv.id, &wanted, &[], now)
        .await?
        .added)
}

/// Sets the conversation's labels to exactly `ids` (labels of the company; an unknown one is
/// refused on `labels` and nothing changes).
pub async fn set_labels(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    ids: &[Uuid],
) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    find_conversation(&txn, actor, id).await?;
    let wanted = labels_by_ids(&txn, actor.company_id, ids, "labels").await?;
    let all = company_labels(&txn, actor.company_id).await?;
    let remove: Vec<label::Model> = all
        .into_iter()
        .filter(|l| !wanted.iter().any(|w| w.id == l.id))
        .collect();
    let change = change_labels(&txn, actor.company_id, id, &wanted, &remove, now).await?;
    finish_labels(core, txn, actor, id, change, now).await
}

/// Puts one label on the conversation (`on`) or takes it off: the header's buttons.
pub async fn toggle_label(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    label: Uuid,
    on: bool,
) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    find_conversation(&txn, actor, id).await?;
    let l = labels_by_ids(&txn, actor.company_id, &[label], "label").await?;
    let (add, remove) = if on { (l, vec![]) } else { (vec![], l) };
    let change = change_labels(&txn, actor.company_id, id, &add, &remove, now).await?;
    finish_labels(core, txn, actor, id, change, now).await
}

async fn finish_labels(
    core: &Core,
    txn: sea_orm::DatabaseTransaction,
    actor: &Actor,
    id: ConversationId,
    change: LabelChange,
    now: i64,
) -> Result<()> {
    if change.is_empty() {
        return Ok(());
    }
    let details = change.details();
    conversation_changed(
        core,
        txn,
        Pending::default(),
        actor,
        id,
        "conversation.labels",
        details,
        now,
    )
    .await
}

/// The conversation of the actor's company, or NotFound.
pub(super) async fn find_conversation(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    id: ConversationId,
) -> Result<conversation::Model> {
    conversation::Entity::find_by_id(id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)
}
