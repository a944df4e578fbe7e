//! What a fired rule sends out, inside its firing's transaction: the reply (its text, or the
//! company's reply template with the template's file where the conversation's kind takes
//! files, rendered with the conversation's values; once WhatsApp's 24-hour window is closed,
//! the rule's approved WhatsApp template instead, or nothing) and the team's e-mail of a
//! «notify» action, in each person's language, through the durable mail queue.

use super::run::{author_name, WINDOW_CLOSED};
use crate::attachments::StoredAttachment;
use crate::events::Pending;
use crate::inbox::{insert_outgoing, Outgoing};
use crate::{mailer, notifications, Core, Result};
use chatter_domain::auto_reply::WaTemplate;
use chatter_domain::{MessageId, Role};
use chatter_store::entity::{contact, conversation, reply_template, source, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use uuid::Uuid;

/// Recorded with a firing whose reply went as the rule's approved WhatsApp template.
pub const WA_TEMPLATE_SENT: &str = "whatsapp_template";
/// Recorded when the rule's reply template was deleted after the rule was saved.
pub const TEMPLATE_GONE: &str = "template_missing";
/// Recorded when the template's file stayed behind: the kind sends no files (SMS).
pub const FILE_KIND: &str = "file_not_sent_kind";
/// Recorded when the template's file stayed behind: over the kind's size, or not a picture
/// where only pictures go (Avito), or gone from the blob store.
pub const FILE_UNFIT: &str = "file_not_sent_unfit";

/// The reply action as the rule states it.
pub(super) struct ReplyAction<'a> {
    pub rule: &'a str,
    pub text: &'a str,
    pub template_id: Option<Uuid>,
    pub whatsapp_template: Option<&'a WaTemplate>,
}

/// What went out: the message stored, if any, and why something was held back.
pub(super) struct Sent {
    pub message: Option<MessageId>,
    pub reason: Option<&'static str>,
}

/// Stores the automatic reply of `a` in `conv` (pending, with its send job), or records why
/// not.
pub(super) async fn reply(
    core: &Core,
    txn: &impl ConnectionTrait,
    pending: &mut Pending,
    conv: &conversation::Model,
    a: ReplyAction<'_>,
    now: i64,
) -> Result<Sent> {
    let author = author_name(a.rule);
    if !crate::inbox::reply_window_open(txn, conv.id, now).await? {
        let Some(w) = a.whatsapp_template else {
            return Ok(held(WINDOW_CLOSED));
        };
        let mut params = Vec::with_capacity(w.params.len());
        for p in &w.params {
            let v = crate::inbox::templates::render_in(txn, conv, p).await?;
            // WhatsApp refuses an empty parameter: a value left blank takes a dash.
            params.push(if v.trim().is_empty() { "—".into() } else { v });
        }
        let shown = match params.is_empty() {
            true => format!("«{}»", w.name),
            false => format!("«{}»: {}", w.name, params.join(" · ")),
        };
        let o = Outgoing {
            text: &shown,
            author_id: None,
            author_name: author,
            reply_to: None,
            automatic: true,
        };
        let m = insert_outgoing(txn, pending, conv, o, now).await?;
        let extra = serde_json::json!({"type": "template", "name": w.name,
            "language": w.language, "params": params});
        let mut am = m.into_active_model();
        am.extra = Set(Some(extra.to_string()));
        let m = am.update(txn).await?;
        crate::crm::sync::outbox::on_reply(txn, conv, m.id, None, now).await?;
        return Ok(Sent {
            message: Some(m.id),
            reason: Some(WA_TEMPLATE_SENT),
        });
    }
    let (body, file) = match a.template_id {
        Some(id) => {
            let Some(t) = reply_template::Entity::find_by_id(id)
                .filter(reply_template::Column::CompanyId.eq(conv.company_id.uuid()))
                .one(txn)
                .await?
            else {
                return Ok(held(TEMPLATE_GONE));
            };
            (t.body.clone(), t.file_blob.is_some().then_some(t))
        }
        None => (a.text.to_owned(), None),
    };
    let text = crate::inbox::templates::render_in(txn, conv, &body).await?;
    let (attachment, reason) = match file {
        Some(t) => attachment(core, txn, conv, &t).await?,
        None => (None, None),
    };
    let preview = match (&attachment, text.trim().is_empty()) {
        (Some(f), true) => format!("[{}]", f.kind),
        _ => text.clone(),
    };
    let o = Outgoing {
        text: &preview,
        author_id: None,
        author_name: author,
        reply_to: None,
        automatic: true,
    };
    let mut m = insert_outgoing(txn, pending, conv, o, now).await?;
    if let Some(f) = attachment {
        let mut am = m.into_active_model();
        am.text = Set(Some(text).filter(|t| !t.trim().is_empty()));
        am.attachments = Set(serde_json::to_string(&[f]).unwrap_or_else(|_| "[]".into()));
        m = am.update(txn).await?;
        chatter_store::search::index_messages(txn, &[(m.id, m.company_id, m.text.as_deref())])
            .await?;
    }
    crate::crm::sync::outbox::on_reply(txn, conv, m.id, None, now).await?;
    Ok(Sent {
        message: Some(m.id),
        reason,
    })
}

fn held(reason: &'static str) -> Sent {
    Sent {
        message: None,
        reason: Some(reason),
    }
}

/// The template's file as the reply's attachment, when the conversation's kind takes it; else
/// the reason it stays behind.
async fn attachment(
    core: &Core,
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    t: &reply_template::Model,
) -> Result<(Option<StoredAttachment>, Option<&'static str>)> {
    let kind = source::Entity::find_by_id(conv.source_id)
        .one(conn)
        .await?
        .and_then(|s| chatter_channels::kind_of(s.kind));
    let Some(rules) = kind.and_then(|k| k.files()) else {
        return Ok((None, Some(FILE_KIND)));
    };
    let Some(blob) = t.file_blob.clone() else {
        return Ok((None, None));
    };
    let Some(bytes) = crate::blobs::get(&core.blobs, &blob).await else {
        return Ok((None, Some(FILE_UNFIT)));
    };
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let raster = crate::blobs::raster_type(&bytes).map(str::to_owned);
    if !rules.takes(raster.as_deref(), size) {
        return Ok((None, Some(FILE_UNFIT)));
    }
    let kind = match raster.is_some() && size <= rules.max_image_bytes {
        true => "image",
        false => "document",
    };
    Ok((
        Some(StoredAttachment {
            kind: kind.to_owned(),
            file_ref: format!("blob:{blob}"),
            file_name: t.file_name.clone(),
            mime_type: t.file_mime.clone(),
            size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
            blob: Some(blob),
            raster,
        }),
        None,
    ))
}

/// Mails the people of a «notify … also by e-mail» action: those named, else the company's
/// owners and admins; each in their language, with a link to the conversation. Returns how
/// many mails were queued.
pub(super) async fn mail_team(
    core: &Core,
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    rule: &str,
    said: &str,
    users: &[Uuid],
) -> Result<usize> {
    let team = notifications::teammates(conn, conv.company_id).await?;
    let who: Vec<Uuid> = team
        .iter()
        .filter(|t| match users.is_empty() {
            true => matches!(t.role, Role::Owner | Role::Admin),
            false => users.contains(&t.user_id),
        })
        .map(|t| t.user_id)
        .collect();
    if who.is_empty() {
        return Ok(0);
    }
    let customer = contact::Entity::find_by_id(conv.contact_id)
        .one(conn)
        .await?
        .map(|c| c.name)
        .unwrap_or_default();
    let company = chatter_store::entity::company::Entity::find_by_id(conv.company_id.uuid())
        .one(conn)
        .await?
        .map(|c| c.name)
        .unwrap_or_default();
    let link = format!("{}/app/inbox/{}", core.config.public_url, conv.id);
    let (rule, customer, company) = (
        mailer::one_line(rule),
        mailer::one_line(&customer),
        mailer::one_line(&company),
    );
    let said: String = mailer::one_line(said).chars().take(300).collect();
    let people = user::Entity::find()
        .filter(user::Column::Id.is_in(who))
        .all(conn)
        .await?;
    for u in &people {
        let (subject, body) = if u.locale == "en" {
            (
                format!("{company}: auto-reply «{rule}» — {customer} (Chatter)"),
                format!(
                    "{},\n\nthe auto-reply «{rule}» fired in the conversation with {customer}:\n\n  «{said}»\n\nOpen it: {link}\n",
                    mailer::one_line(&u.name)
                ),
            )
        } else {
            (
                format!("{company}: автоответ «{rule}» — {customer} (Chatter)"),
                format!(
                    "{},\n\nсработал автоответ «{rule}» в разговоре с клиентом {customer}:\n\n  «{said}»\n\nОткрыть разговор: {link}\n",
                    mailer::one_line(&u.name)
                ),
            )
        };
        mailer::enqueue(core, conn, &u.email, &subject, &body).await?;
    }
    Ok(people.len())
}
