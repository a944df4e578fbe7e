//! Reply templates (requirement R5.3): the company's (kept by those who manage settings, as
//! labels are) and each member's own (seen and changed by that member alone), in categories,
//! with variables (`chatter_domain::template`) and at most one file kept in the blob store.
//! A template is rendered for one conversation with its values (the customer's and company's
//! names, the manager, the source, the CRM deal); inserting one with a file sends the file
//! through the reply file path (`reply_file`) with the text as its caption.

use super::*;
use chatter_domain::template::{self, TemplateError, VARIABLES};
use chatter_domain::UserId;
use chatter_store::entity::{company, crm_conversation, reply_template, user};

/// The longest title, in characters.
pub const TITLE_MAX: usize = 100;
/// The longest category, in characters.
pub const CATEGORY_MAX: usize = 60;
/// The longest text, in characters (a Telegram message's 4096, with room for values).
pub const BODY_MAX: usize = 4000;
/// The largest file a template keeps.
pub const FILE_MAX_BYTES: usize = 20 * 1024 * 1024;

/// Whose a template is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole company's (those who manage settings keep them).
    Company,
    /// The acting member's own.
    Personal,
}

/// What happens to a template's file when it is saved.
pub enum FileChange {
    Keep,
    Remove,
    Set(Upload),
}

/// A template as typed.
pub struct TemplateInput {
    pub scope: Scope,
    pub category: String,
    pub title: String,
    pub body: String,
    pub file: FileChange,
}

/// The values of a conversation's variables (`None`: unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values {
    pub client_name: Option<String>,
    pub company_name: Option<String>,
    pub manager_name: Option<String>,
    pub source_name: Option<String>,
    pub deal_id: Option<String>,
    pub client_phone: Option<String>,
    pub client_email: Option<String>,
    pub deal_pipeline: Option<String>,
    pub deal_stage: Option<String>,
    pub deal_responsible: Option<String>,
}

impl Values {
    /// The value of variable `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        match name {
            "client_name" => self.client_name.clone(),
            "company_name" => self.company_name.clone(),
            "manager_name" => self.manager_name.clone(),
            "source_name" => self.source_name.clone(),
            "deal_id" => self.deal_id.clone(),
            "client_phone" => self.client_phone.clone(),
            "client_email" => self.client_email.clone(),
            "deal_pipeline" => self.deal_pipeline.clone(),
            "deal_stage" => self.deal_stage.clone(),
            "deal_responsible" => self.deal_responsible.clone(),
            _ => None,
        }
    }

    /// Example values for a preview without a conversation.
    pub fn sample(company: &str, manager: &str) -> Values {
        Values {
            client_name: Some("Мария".into()),
            company_name: Some(company.to_owned()),
            manager_name: Some(manager.to_owned()).filter(|m| !m.is_empty()),
            source_name: Some("Telegram".into()),
            deal_id: Some("12345".into()),
            client_phone: Some("+79991234567".into()),
            client_email: Some("maria@example.ru".into()),
            deal_pipeline: Some("Продажи".into()),
            deal_stage: Some("Первичный контакт".into()),
            deal_responsible: Some(manager.to_owned()).filter(|m| !m.is_empty()),
        }
    }

    /// (variable, value) for each variable, in [`VARIABLES`] order.
    pub fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        VARIABLES.iter().map(|v| (*v, self.get(v))).collect()
    }
}

/// A template rendered for a conversation.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub template: reply_template::Model,
    pub text: String,
}

fn visible(actor: &Actor) -> Condition {
    let own = match actor.user_id {
        Some(me) => Condition::any()
            .add(reply_template::Column::OwnerId.is_null())
            .add(reply_template::Column::OwnerId.eq(me)),
        None => Condition::all().add(reply_template::Column::OwnerId.is_null()),
    };
    Condition::all()
        .add(reply_template::Column::CompanyId.eq(actor.company_id))
        .add(own)
}

/// The templates the actor may use (the company's and the actor's own), by category and
/// title; with `q`, those whose title, category or text contains it (any letter case).
pub async fn list_templates(
    core: &Core,
    actor: &Actor,
    q: Option<&str>,
) -> Result<Vec<reply_template::Model>> {
    actor.require(Permission::Read)?;
    let mut ts = reply_template::Entity::find()
        .filter(visible(actor))
        .all(&core.db)
        .await?;
    if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
        let q = q.to_lowercase();
        ts.retain(|t| {
            t.title.to_lowercase().contains(&q)
                || t.category.to_lowercase().contains(&q)
                || t.body.to_lowercase().contains(&q)
        });
    }
    ts.sort_by_key(|t| {
        (
            t.category.is_empty(),
            t.category.to_lowercase(),
            t.title.to_lowercase(),
        )
    });
    Ok(ts)
}

/// One template the actor may use, or NotFound (another member's own is not found).
pub async fn get_template(core: &Core, actor: &Actor, id: Uuid) -> Result<reply_template::Model> {
    actor.require(Permission::Read)?;
    reply_template::Entity::find_by_id(id)
        .filter(visible(actor))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Whether the actor may change `t`: the company's by those who manage, one's own by oneself.
fn may_change(actor: &Actor, t: &reply_template::Model) -> Result<()> {
    match t.owner_id {
        None => actor.require(Permission::Manage),
        Some(o) if Some(o) == actor.user_id.map(UserId::uuid) => actor.require(Permission::Read),
        Some(_) => Err(CoreError::NotFound),
    }
}

/// The text's refusal as a field error on `body`.
pub fn body_error(e: &TemplateError) -> FieldError {
    e.field_error("body")
}

/// The typed fields, checked: every refusal at once, nothing stored.
fn checked(input: &TemplateInput) -> Result<(String, String, String)> {
    let mut errs = Vec::new();
    let title = match optional_text("title", &input.title, TITLE_MAX) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            errs.push(FieldError::new("title", "err.required"));
            None
        }
        Err(e) => {
            errs.push(e);
            None
        }
    };
    let category = match optional_text("category", &input.category, CATEGORY_MAX) {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            errs.push(e);
            String::new()
        }
    };
    let body = match multi_line_text("body", &input.body, BODY_MAX) {
        Ok(b) => match template::parse(&b) {
            Ok(_) => Some(b),
            Err(e) => {
                errs.push(body_error(&e));
                None
            }
        },
        Err(e) => {
            errs.push(e);
            None
        }
    };
    // They would turn the inbox's text around the template, and the customer's message.
    for (field, text) in [
        ("title", &input.title),
        ("category", &input.category),
        ("body", &input.body),
    ] {
        if text.chars().any(chatter_domain::text::is_bidi_control)
            && !errs.iter().any(|e: &FieldError| e.field == field)
        {
            errs.push(FieldError::new(field, "err.bidi_chars"));
        }
    }
    if let FileChange::Set(f) = &input.file {
        if let Err(e) = check_file(f) {
            errs.push(e);
        }
    }
    match (title, body) {
        (Some(t), Some(b)) if errs.is_empty() => Ok((category, t, b)),
        _ => Err(CoreError::Invalid(errs)),
    }
}

fn check_file(f: &Upload) -> std::result::Result<(), FieldError> {
    if f.bytes.is_empty() {
        return Err(FieldError::new("file", "err.file_empty"));
    }
    if f.bytes.len() > FILE_MAX_BYTES {
        let mut e = FieldError::new("file", "err.template_file_too_large");
        e.limit = Some(FILE_MAX_BYTES / (1024 * 1024));
        return Err(e);
    }
    if is_executable(&f.file_name, &f.bytes) {
        return Err(FieldError::new("file", "err.file_executable"));
    }
    Ok(())
}

/// Stores a new file in the blob store: (name, type, blob, size).
async fn store_file(core: &Core, f: &Upload) -> Result<(String, String, String, i64)> {
    let name = f
        .file_name
        .rsplit(['/', '\\'])
        .next()
        .map(|n| chatter_domain::text::strip_controls(n).trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "file".into());
    let name: String = name.chars().take(200).collect();
    let mime = crate::blobs::raster_type(&f.bytes)
        .map(str::to_owned)
        .or_else(|| f.mime_type.clone().filter(|m| m.contains('/')))
        .unwrap_or_else(|| "application/octet-stream".into());
    let blob = crate::blobs::put(&core.blobs, &f.bytes)
        .await
        .map_err(|e| CoreError::Internal(format!("cannot store the file: {e}")))?;
    Ok((
        name,
        mime,
        blob,
        i64::try_from(f.bytes.len()).unwrap_or(i64::MAX),
    ))
}

fn details(t: &reply_template::Model) -> serde_json::Value {
    serde_json::json!({
        "title": t.title,
        "category": t.category,
        "personal": t.owner_id.is_some(),
        "file": t.file_name,
    })
}

/// Creates a template: the company's (those who manage) or the actor's own (a member; an API
/// key, acting for no member, cannot have templates of its own: `personal`).
pub async fn create_template(
    core: &Core,
    actor: &Actor,
    input: TemplateInput,
) -> Result<reply_template::Model> {
    let owner = match input.scope {
        Scope::Company => {
            actor.require(Permission::Manage)?;
            None
        }
        Scope::Personal => {
            actor.require(Permission::Read)?;
            Some(
                actor
                    .user_id
                    .ok_or_else(|| CoreError::field("personal", "err.template_personal_member"))?
                    .uuid(),
            )
        }
    };
    let (category, title, body) = checked(&input)?;
    let file = match &input.file {
        FileChange::Set(f) => Some(store_file(core, f).await?),
        _ => None,
    };
    let now = core.now();
    let txn = core.db.begin().await?;
    let (file_name, file_mime, file_blob, file_size) = match file {
        Some((n, m, b, s)) => (Some(n), Some(m), Some(b), Some(s)),
        None => (None, None, None, None),
    };
    let t = reply_template::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(actor.company_id.uuid()),
        owner_id: Set(owner),
        category: Set(category),
        title: Set(title),
        body: Set(body),
        file_name: Set(file_name),
        file_mime: Set(file_mime),
        file_blob: Set(file_blob),
        file_size: Set(file_size),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "template.create",
        &t.id.to_string(),
        details(&t),
    )
    .await?;
    txn.commit().await?;
    Ok(t)
}

/// Changes a template's category, title, text and file (its scope stays).
pub async fn update_template(
    core: &Core,
    actor: &Actor,
    id: Uuid,
    input: TemplateInput,
) -> Result<reply_template::Model> {
    let old = get_template(core, actor, id).await?;
    may_change(actor, &old)?;
    let (category, title, body) = checked(&input)?;
    let file = match &input.file {
        FileChange::Set(f) => Some(store_file(core, f).await?),
        _ => None,
    };
    let now = core.now();
    let txn = core.db.begin().await?;
    let mut m = old.clone().into_active_model();
    m.category = Set(category);
    m.title = Set(title);
    m.body = Set(body);
    match (&input.file, file) {
        (FileChange::Remove, _) => {
            m.file_name = Set(None);
            m.file_mime = Set(None);
            m.file_blob = Set(None);
            m.file_size = Set(None);
        }
        (_, Some((n, mime, b, s))) => {
            m.file_name = Set(Some(n));
            m.file_mime = Set(Some(mime));
            m.file_blob = Set(Some(b));
            m.file_size = Set(Some(s));
        }
        _ => {}
    }
    m.updated_at = Set(now);
    let t = m.update(&txn).await?;
    let d = serde_json::json!({"from": details(&old), "to": details(&t)});
    audit::record(&txn, actor, now, "template.update", &id.to_string(), d).await?;
    txn.commit().await?;
    Ok(t)
}

/// The names of the company's auto-reply rules that send template `id` (read from the stored
/// rules: the inbox does not name the automation that keeps them).
async fn rules_using(
    conn: &impl ConnectionTrait,
    company: chatter_domain::CompanyId,
    id: Uuid,
) -> Result<Vec<String>> {
    use chatter_domain::auto_reply::AutoReply;
    use chatter_store::entity::auto_reply;
    let rows = auto_reply::Entity::find()
        .filter(auto_reply::Column::CompanyId.eq(company))
        .filter(auto_reply::Column::Rule.contains(id.to_string()))
        .order_by_asc(auto_reply::Column::Position)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            serde_json::from_str::<AutoReply>(&r.rule)
                .is_ok_and(|rule| rule.reply_template() == Some(id))
        })
        .map(|r| r.name)
        .collect())
}

/// Deletes a template (its file stays in the blob store, which other messages may share); one
/// an auto-reply rule sends is refused (`CoreError::InUse`, naming the rules), so no rule is
/// left sending nothing.
pub async fn delete_template(core: &Core, actor: &Actor, id: Uuid) -> Result<()> {
    let t = get_template(core, actor, id).await?;
    may_change(actor, &t)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let users = rules_using(&txn, actor.company_id, id).await?;
    if !users.is_empty() {
        return Err(CoreError::InUse {
            what: "template",
            by: users,
        });
    }
    reply_template::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        now,
        "template.delete",
        &id.to_string(),
        details(&t),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The values of a conversation's variables: its customer (name, phone, e-mail), the company,
/// the manager (the acting member, else the conversation's assignee), the source and the CRM
/// deal (its id, and the pipeline, stage and responsible the sync knows).
pub async fn values_for(core: &Core, actor: &Actor, id: ConversationId) -> Result<Values> {
    let row = get_conversation(core, actor, id).await?;
    let mut v = values_in(&core.db, &row.conversation).await?;
    if let Some(me) = actor.user_id {
        v.manager_name = user::Entity::find_by_id(me.uuid())
            .one(&core.db)
            .await?
            .map(|u| u.name);
    }
    Ok(v)
}

/// The values of conversation `conv`'s variables inside the caller's transaction, for text
/// Chatter sends by itself (an auto-reply): the manager is the conversation's assignee.
pub async fn values_in(conn: &impl ConnectionTrait, conv: &conversation::Model) -> Result<Values> {
    let mut person = contact::Entity::find_by_id(conv.contact_id)
        .one(conn)
        .await?;
    // A merged customer's name is the kept person's.
    if let Some(kept) = person.as_ref().and_then(|c| c.merged_into) {
        if let Some(k) = contact::Entity::find_by_id(kept).one(conn).await? {
            person = Some(k);
        }
    }
    let company = company::Entity::find_by_id(conv.company_id.uuid())
        .one(conn)
        .await?
        .map(|c| c.name);
    let manager = match conv.assignee_id {
        Some(u) => user::Entity::find_by_id(u).one(conn).await?.map(|u| u.name),
        None => None,
    };
    let source = source::Entity::find_by_id(conv.source_id)
        .one(conn)
        .await?
        .map(|s| s.name);
    let deal = crm_conversation::Entity::find_by_id(conv.id.0)
        .one(conn)
        .await?
        .and_then(|c| c.deal_id)
        .map(|d| d.to_string());
    let names = crate::crm::sync::outbox::deal_names(conn, conv).await?;
    let (phone, email) = person
        .as_ref()
        .map_or((None, None), |c| (c.phone.clone(), c.email.clone()));
    Ok(Values {
        client_name: person.map(|c| c.name),
        company_name: company,
        manager_name: manager,
        source_name: source,
        deal_id: deal,
        client_phone: phone,
        client_email: email,
        deal_pipeline: names.pipeline,
        deal_stage: names.stage,
        deal_responsible: names.responsible,
    })
}

/// `text` with conversation `conv`'s values in its variables (see [`values_in`]).
pub async fn render_in(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    text: &str,
) -> Result<String> {
    let values = values_in(conn, conv).await?;
    Ok(template::render(text, |n| values.get(n)))
}

/// Template `template_id` rendered for conversation `id`.
pub async fn render_for(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    template_id: Uuid,
) -> Result<Rendered> {
    let t = get_template(core, actor, template_id).await?;
    let values = values_for(core, actor, id).await?;
    Ok(Rendered {
        text: template::render(&t.body, |n| values.get(n)),
        template: t,
    })
}

/// The values of the actor's most recent conversation (for a preview), or none.
pub async fn recent_values(core: &Core, actor: &Actor) -> Result<Option<(ConversationId, Values)>> {
    actor.require(Permission::Read)?;
    let last = conversation::Entity::find()
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .order_by_desc(conversation::Column::LastMessageAt)
        .one(&core.db)
        .await?;
    match last {
        Some(c) => Ok(Some((c.id, values_for(core, actor, c.id).await?))),
        None => Ok(None),
    }
}

/// A reply made from template `template_id`: `text` (edited as the manager likes) goes alone,
/// or, when the template has a file, as the file's caption through the file reply path.
pub async fn reply_with_template(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    template_id: Uuid,
    text: &str,
    reply_to: Option<MessageId>,
) -> Result<message::Model> {
    let t = get_template(core, actor, template_id).await?;
    let Some(blob) = t.file_blob.as_deref() else {
        return reply(core, actor, id, text, reply_to).await;
    };
    let bytes = crate::blobs::get(&core.blobs, blob)
        .await
        .ok_or_else(|| CoreError::field("file", "err.template_file_gone"))?;
    let upload = Upload {
        file_name: t.file_name.clone().unwrap_or_else(|| "file".into()),
        mime_type: t.file_mime.clone(),
        bytes,
    };
    reply_file(core, actor, id, upload, text, reply_to).await
}

/// A file given as base64 (the API's), checked like an uploaded one.
pub fn file_from_base64(name: &str, mime: Option<&str>, data: &str) -> Result<Upload> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| CoreError::field("file", "err.file_base64"))?;
    Ok(Upload {
        file_name: name.to_owned(),
        mime_type: mime.map(str::to_owned),
        bytes,
    })
}
