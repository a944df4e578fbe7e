//! People: a customer as the team knows them, across messengers. Each source knows a customer
//! as one contact (an identity); merging makes several identities one person — the older
//! contact is kept and the others point at it (`contacts.merged_into`), so their conversations,
//! past and future, belong to the person, and the CRM side uses one amoCRM contact
//! (`crm::sync::outbox::on_merge`). The team may set the person's name, phone and e-mail; each
//! change is audited and queued for amoCRM through the durable CRM outbox in the same
//! transaction.

use super::*;
use crate::crm::sync::outbox;
use chatter_domain::values::Email;
use std::collections::HashSet;

/// The most characters of an e-mail address we keep.
const EMAIL_MAX: usize = 254;

/// One messenger identity of a person.
#[derive(Clone, Debug)]
pub struct Identity {
    pub contact: contact::Model,
    pub source_name: String,
    pub source_kind: SourceKind,
    /// The customer's profile in the messenger, where it has public usernames.
    pub profile_url: Option<String>,
}

/// A conversation of a person, for the card's list.
#[derive(Clone, Debug)]
pub struct PersonConversation {
    pub conversation: conversation::Model,
    pub source_name: String,
    pub source_kind: SourceKind,
}

/// A person with every identity and conversation.
#[derive(Clone, Debug)]
pub struct Person {
    /// The kept contact: its id is the person's id, its name, phone and e-mail the person's.
    pub contact: contact::Model,
    /// The person's contact first, then the merged ones, oldest first.
    pub identities: Vec<Identity>,
    /// Every phone of the identities, the person's first, without repeats.
    pub phones: Vec<String>,
    /// Newest first.
    pub conversations: Vec<PersonConversation>,
}

impl Person {
    pub fn identity_ids(&self) -> Vec<ContactId> {
        self.identities.iter().map(|i| i.contact.id).collect()
    }

    pub fn conversation_ids(&self) -> Vec<ConversationId> {
        self.conversations
            .iter()
            .map(|c| c.conversation.id)
            .collect()
    }
}

/// What the team changes about a person; `None` leaves a field as it is, an empty string
/// clears the phone or the e-mail.
#[derive(Clone, Debug, Default)]
pub struct PersonChange {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The person a contact of the actor's company belongs to (any identity's id will do).
async fn person_id(conn: &impl ConnectionTrait, actor: &Actor, id: ContactId) -> Result<ContactId> {
    let c = contact::Entity::find_by_id(id)
        .filter(contact::Column::CompanyId.eq(actor.company_id))
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)?;
    Ok(c.merged_into.unwrap_or(c.id))
}

async fn read_person(conn: &impl ConnectionTrait, actor: &Actor, id: ContactId) -> Result<Person> {
    let mut all = contact::Entity::find()
        .filter(contact::Column::CompanyId.eq(actor.company_id))
        .filter(
            Condition::any()
                .add(contact::Column::Id.eq(id))
                .add(contact::Column::MergedInto.eq(id)),
        )
        .order_by_asc(contact::Column::CreatedAt)
        .all(conn)
        .await?;
    all.sort_by_key(|c| c.id != id);
    let kept = all.first().cloned().ok_or(CoreError::NotFound)?;
    let ids: Vec<ContactId> = all.iter().map(|c| c.id).collect();
    let convs = conversation::Entity::find()
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .filter(conversation::Column::ContactId.is_in(ids))
        .order_by_desc(conversation::Column::LastMessageAt)
        .order_by_desc(conversation::Column::Id)
        .all(conn)
        .await?;
    let source_ids: HashSet<SourceId> = all
        .iter()
        .map(|c| c.source_id)
        .chain(convs.iter().map(|c| c.source_id))
        .collect();
    let sources = source::Entity::find()
        .filter(source::Column::Id.is_in(source_ids))
        .all(conn)
        .await?;
    let src = |id: SourceId| sources.iter().find(|s| s.id == id);
    let mut phones: Vec<String> = Vec::new();
    for p in all.iter().filter_map(|c| c.phone.clone()) {
        if !phones.contains(&p) {
            phones.push(p);
        }
    }
    let identities = all
        .into_iter()
        .filter_map(|c| {
            let s = src(c.source_id)?;
            let profile_url = c
                .username
                .as_deref()
                .zip(chatter_channels::kind_of(s.kind))
                .and_then(|(u, k)| k.profile_url(u));
            Some(Identity {
                source_name: s.name.clone(),
                source_kind: s.kind,
                profile_url,
                contact: c,
            })
        })
        .collect();
    let conversations = convs
        .into_iter()
        .filter_map(|c| {
            let s = src(c.source_id)?;
            Some(PersonConversation {
                source_name: s.name.clone(),
                source_kind: s.kind,
                conversation: c,
            })
        })
        .collect();
    Ok(Person {
        contact: kept,
        identities,
        phones,
        conversations,
    })
}

/// A person of the actor's company, by the id of any of their identities.
pub async fn person(core: &Core, actor: &Actor, id: ContactId) -> Result<Person> {
    actor.require(Permission::Read)?;
    let p = person_id(&core.db, actor, id).await?;
    read_person(&core.db, actor, p).await
}

/// The person a conversation is with.
pub async fn person_of_conversation(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
) -> Result<Person> {
    let row = get_conversation(core, actor, id).await?;
    person(core, actor, row.contact.id).await
}

/// The company's people (kept contacts only), newest first by when they were first seen, after
/// `after` (created_at, id) — the API's pages; `q` finds part of a name, username or phone of
/// any identity.
pub async fn list_people(
    core: &Core,
    actor: &Actor,
    q: Option<&str>,
    after: Option<(i64, Uuid)>,
    limit: u64,
) -> Result<Vec<contact::Model>> {
    actor.require(Permission::Read)?;
    let mut query = contact::Entity::find()
        .filter(contact::Column::CompanyId.eq(actor.company_id))
        .filter(contact::Column::MergedInto.is_null());
    if let Some(text) = q.map(str::trim).filter(|t| !t.is_empty()) {
        let mut cond = Condition::any();
        for like in case_variants(&text.replace(['%', '_'], "")) {
            cond = cond
                .add(contact::Column::Name.like(&like))
                .add(contact::Column::Username.like(&like))
                .add(contact::Column::Phone.like(&like))
                .add(contact::Column::Email.like(&like));
        }
        // Digits of a phone typed any way: «8 (999) 123» finds +7999123….
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 3 {
            cond = cond.add(contact::Column::Phone.like(format!("%{digits}%")));
        }
        let matching: Vec<(ContactId, Option<ContactId>)> = contact::Entity::find()
            .filter(contact::Column::CompanyId.eq(actor.company_id))
            .filter(cond)
            .select_only()
            .column(contact::Column::Id)
            .column(contact::Column::MergedInto)
            .into_tuple()
            .all(&core.db)
            .await?;
        let persons: HashSet<ContactId> = matching
            .into_iter()
            .map(|(id, m)| m.unwrap_or(id))
            .collect();
        query = query.filter(contact::Column::Id.is_in(persons));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            Condition::any().add(contact::Column::CreatedAt.lt(at)).add(
                Condition::all()
                    .add(contact::Column::CreatedAt.eq(at))
                    .add(contact::Column::Id.lt(id)),
            ),
        );
    }
    Ok(query
        .order_by_desc(contact::Column::CreatedAt)
        .order_by_desc(contact::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?)
}

/// Checks a change; the normalised phone and e-mail (`Some("")` clears).
fn checked(change: &PersonChange) -> Result<PersonChange> {
    let mut errors = Vec::new();
    let name = match change.name.as_deref() {
        Some(raw) => match chatter_domain::values::required_text("name", raw, limits::NAME) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => None,
    };
    let phone = match change.phone.as_deref().map(str::trim) {
        Some("") => Some(String::new()),
        Some(raw) => match chatter_domain::normalize_phone(raw) {
            Some(p) => Some(p),
            None => {
                errors.push(FieldError::new("phone", "err.phone_invalid"));
                None
            }
        },
        None => None,
    };
    let email = match change.email.as_deref().map(str::trim) {
        Some("") => Some(String::new()),
        Some(raw) if raw.chars().count() > EMAIL_MAX => {
            errors.push(FieldError::too_long("email", EMAIL_MAX));
            None
        }
        Some(raw) => match Email::parse("email", raw) {
            Ok(e) => Some(e.as_str().to_owned()),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return Err(CoreError::Invalid(errors));
    }
    Ok(PersonChange { name, phone, email })
}

/// Sets a person's name, phone and e-mail (each only when given); audited, and sent to amoCRM
/// through the CRM outbox. Bad input changes nothing.
pub async fn update_person(
    core: &Core,
    actor: &Actor,
    id: ContactId,
    change: &PersonChange,
) -> Result<Person> {
    actor.require(Permission::Reply)?;
    let change = checked(change)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let p = person_id(&txn, actor, id).await?;
    let before = read_person(&txn, actor, p).await?;
    let mut am = before.contact.clone().into_active_model();
    let mut changed = serde_json::Map::new();
    if let Some(n) = &change.name {
        if *n != before.contact.name {
            am.name = sea_orm::ActiveValue::Set(n.clone());
            am.edited_at = sea_orm::ActiveValue::Set(Some(now));
            changed.insert("name".into(), serde_json::json!(n));
        }
    }
    let empty_none = |v: &String| (!v.is_empty()).then(|| v.clone());
    if let Some(ph) = &change.phone {
        if empty_none(ph) != before.contact.phone {
            am.phone = sea_orm::ActiveValue::Set(empty_none(ph));
            changed.insert("phone".into(), serde_json::json!(empty_none(ph)));
        }
    }
    if let Some(e) = &change.email {
        if empty_none(e) != before.contact.email {
            am.email = sea_orm::ActiveValue::Set(empty_none(e));
            changed.insert("email".into(), serde_json::json!(empty_none(e)));
        }
    }
    if changed.is_empty() {
        txn.commit().await?;
        return Ok(before);
    }
    am.updated_at = sea_orm::ActiveValue::Set(now);
    am.update(&txn).await?;
    outbox::enqueue_contact_change(
        &txn,
        actor.company_id,
        p,
        &before.conversation_ids(),
        false,
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "contact.update",
        &p.to_string(),
        serde_json::Value::Object(changed),
    )
    .await?;
    let after = read_person(&txn, actor, p).await?;
    txn.commit().await?;
    Ok(after)
}

/// Makes two people one: the one seen first is kept, the other and every identity merged into
/// it now point at the kept one. Refused: a person with themselves (422 on `other_id`), a
/// contact of another company (not found). Audited; the CRM side is queued.
pub async fn merge_people(
    core: &Core,
    actor: &Actor,
    id: ContactId,
    other: ContactId,
) -> Result<Person> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let a = person_id(&txn, actor, id).await?;
    let b = person_id(&txn, actor, other).await?;
    if a == b {
        return Err(CoreError::field("other_id", "err.contact_merge_self"));
    }
    let pa = read_person(&txn, actor, a).await?;
    let pb = read_person(&txn, actor, b).await?;
    let older_first =
        (pa.contact.created_at, pa.contact.id) <= (pb.contact.created_at, pb.contact.id);
    let (kept, gone) = if older_first { (pa, pb) } else { (pb, pa) };
    contact::Entity::update_many()
        .col_expr(
            contact::Column::MergedInto,
            Expr::value(Some(kept.contact.id)),
        )
        .col_expr(contact::Column::UpdatedAt, Expr::value(now))
        .filter(contact::Column::CompanyId.eq(actor.company_id))
        .filter(contact::Column::Id.is_in(gone.identity_ids()))
        .exec(&txn)
        .await?;
    // What the team knew about the other person fills what the kept one lacks.
    if kept.contact.email.is_none() && gone.contact.email.is_some() {
        contact::Entity::update_many()
            .col_expr(
                contact::Column::Email,
                Expr::value(gone.contact.email.clone()),
            )
            .filter(contact::Column::Id.eq(kept.contact.id))
            .exec(&txn)
            .await?;
    }
    let merged = read_person(&txn, actor, kept.contact.id).await?;
    outbox::on_merge(
        &txn,
        actor.company_id,
        &merged.identity_ids(),
        &gone.conversation_ids(),
        now,
    )
    .await?;
    // The kept amoCRM contact gets the person's phones from both messengers.
    outbox::enqueue_contact_change(
        &txn,
        actor.company_id,
        merged.contact.id,
        &merged.conversation_ids(),
        false,
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "contact.merge",
        &kept.contact.id.to_string(),
        serde_json::json!({
            "kept": kept.contact.id,
            "merged": gone.contact.id,
            "kept_name": kept.contact.name,
            "merged_name": gone.contact.name,
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(merged)
}
