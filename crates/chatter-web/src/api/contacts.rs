//! People (the customer card through the API): the company's contacts with search, one person
//! with their messenger identities, conversations and amoCRM side, changing a person's name,
//! phone and e-mail, and merging two people. The same rules as the inbox's card: members who
//! may read see every person of the company; changing and merging need the right to reply.

use super::page::{page_types, Listed, Paged, Paging, Position};
use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::inbox::contacts::{self, Person, PersonChange};
use chatter_core::CoreError;
use chatter_domain::ContactId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A person in the list.
#[derive(Serialize, ToSchema)]
pub struct ContactSummaryOut {
    pub id: Uuid,
    pub name: String,
    /// E.164, when known.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// When the person first wrote, Unix ms.
    pub created_at: i64,
}

/// One messenger identity of a person.
#[derive(Serialize, ToSchema)]
pub struct IdentityOut {
    /// The identity's contact id (the person's own id for the first one).
    pub contact_id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    /// The source's kind: telegram_bot, vk, max, avito, whatsapp, sms, api…
    pub kind: String,
    /// The messenger's id of the person.
    pub external_id: String,
    /// The name the messenger gives.
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    /// The customer's profile in the messenger, where it has public usernames.
    pub profile_url: Option<String>,
}

/// A conversation of the person.
#[derive(Serialize, ToSchema)]
pub struct ContactConversationOut {
    pub id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    /// open | closed
    pub status: String,
    pub last_text: String,
    pub last_message_at: i64,
    /// The conversation's deal in amoCRM (absent without a connected CRM).
    pub deal: Option<DealOut>,
}

/// A conversation's deal as the CRM sync stored it.
#[derive(Serialize, ToSchema)]
pub struct DealOut {
    /// `null` until the deal is made.
    pub deal_id: Option<i64>,
    pub deal_url: Option<String>,
    /// Names from the synced amoCRM metadata; `null` when not synced yet.
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    pub responsible: Option<String>,
    /// Some of the conversation is still on its way to amoCRM.
    pub pending: bool,
}

/// The person's amoCRM contact.
#[derive(Serialize, ToSchema)]
pub struct ContactCrmOut {
    /// `null` until the sync made or found it.
    pub contact_id: Option<i64>,
    pub contact_url: Option<String>,
}

/// A person: identities in every messenger, conversations newest first, the amoCRM side.
#[derive(Serialize, ToSchema)]
pub struct ContactOutFull {
    pub id: Uuid,
    pub name: String,
    /// The phone the team set or the messenger gave (E.164).
    pub phone: Option<String>,
    /// Every phone of the person's identities.
    pub phones: Vec<String>,
    pub email: Option<String>,
    pub created_at: i64,
    pub identities: Vec<IdentityOut>,
    pub conversations: Vec<ContactConversationOut>,
    /// `null` when the company has no CRM connected.
    pub crm: Option<ContactCrmOut>,
}

page_types!(ContactPage, ContactsOut, ContactSummaryOut, "contacts");

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactQuery {
    /// Part of a name, username, e-mail or phone (digits of a phone typed any way).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// At most this many, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// Send it to get pages (`{"items", "next_cursor"}`, newest people first): empty for the
    /// first page, then the `next_cursor` of the previous one. Without it the answer is a bare
    /// array.
    #[param(pattern = "^([0-9a-fA-F]{48})?$")]
    pub cursor: Option<String>,
}

fn summary(c: chatter_store::entity::contact::Model) -> ContactSummaryOut {
    ContactSummaryOut {
        id: c.id.0,
        name: c.name,
        phone: c.phone,
        email: c.email,
        created_at: c.created_at,
    }
}

async fn full(
    st: &AppState,
    a: &chatter_core::Actor,
    p: Person,
) -> Result<ContactOutFull, ApiError> {
    let crm =
        chatter_core::crm::sync::person_crm(&st.core, a, &p.identity_ids(), &p.conversation_ids())
            .await?;
    let deal = |id: chatter_domain::ConversationId| {
        crm.as_ref().map(|c| match c.deals.get(&id) {
            Some(d) => DealOut {
                deal_id: d.deal_id,
                deal_url: d.deal_url.clone(),
                pipeline: d.pipeline.clone(),
                stage: d.stage.clone(),
                responsible: d.responsible.clone(),
                pending: d.pending,
            },
            None => DealOut {
                deal_id: None,
                deal_url: None,
                pipeline: None,
                stage: None,
                responsible: None,
                pending: false,
            },
        })
    };
    Ok(ContactOutFull {
        id: p.contact.id.0,
        name: p.contact.name.clone(),
        phone: p.contact.phone.clone(),
        phones: p.phones.clone(),
        email: p.contact.email.clone(),
        created_at: p.contact.created_at,
        identities: p
            .identities
            .iter()
            .map(|i| IdentityOut {
                contact_id: i.contact.id.0,
                source_id: i.contact.source_id.0,
                source_name: i.source_name.clone(),
                kind: i.source_kind.as_str().to_owned(),
                external_id: i.contact.external_id.clone(),
                name: i.contact.name.clone(),
                username: i.contact.username.clone(),
                phone: i.contact.phone.clone(),
                profile_url: i.profile_url.clone(),
            })
            .collect(),
        conversations: p
            .conversations
            .iter()
            .map(|c| ContactConversationOut {
                id: c.conversation.id.0,
                source_id: c.conversation.source_id.0,
                source_name: c.source_name.clone(),
                status: c.conversation.status.to_string(),
                last_text: c.conversation.last_text.clone(),
                last_message_at: c.conversation.last_message_at,
                deal: deal(c.conversation.id),
            })
            .collect(),
        crm: crm.map(|c| ContactCrmOut {
            contact_id: c.contact_id,
            contact_url: c.contact_url,
        }),
    })
}

/// The company's people (a person merged from several messengers is one entry), newest first.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ContactQuery),
    responses((status = 200, body = ContactsOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn list_contacts(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<ContactQuery>,
) -> Result<Response, ApiError> {
    let paging = match Paging::parse(q.cursor.as_deref(), q.limit) {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    if q.q.as_deref().is_some_and(|t| t.chars().count() > 200) {
        return Err(
            CoreError::Invalid(vec![chatter_domain::FieldError::too_long("q", 200)]).into(),
        );
    }
    let text = q.q;
    let after = paging.after().map(|p| (p.key, p.id));
    let rows =
        contacts::list_people(&st.core, &a, text.as_deref(), after, paging.fetch(100)).await?;
    let listed = match paging {
        Paging::Legacy { .. } => Listed::All(rows.into_iter().map(summary).collect()),
        Paging::Page { limit, .. } => {
            let page = Paged::cut(rows, limit, |c| Position::new(c.created_at, c.id));
            Listed::Page(Paged {
                items: page.items.into_iter().map(summary).collect(),
                next_cursor: page.next_cursor,
            })
        }
    };
    Ok(listed.into_response())
}

/// One person, by the id of any of their identities: identities, conversations, the amoCRM
/// contact and each conversation's deal.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts",
    params(("id" = Uuid, Path, description = "contact id")),
    responses((status = 200, body = ContactOutFull), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such contact in this company")))]
pub async fn get_contact(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ContactId>,
) -> Result<Json<ContactOutFull>, ApiError> {
    let p = contacts::person(&st.core, &a, id).await?;
    Ok(Json(full(&st, &a, p).await?))
}

/// What to change about a person; a field left out (or `null`) stays as it is.
#[derive(Deserialize, ToSchema)]
pub struct ContactPatchIn {
    /// 1 to 120 characters, one line; from now on the messenger's name does not replace it.
    #[schema(example = "Ольга Смирнова", min_length = 1, max_length = 120)]
    pub name: Option<String>,
    /// A phone number in any usual notation (+7 999 123-45-67, 8 999 1234567); stored in E.164.
    /// An empty string removes it.
    #[schema(example = "+7 999 123-45-67", max_length = 40)]
    pub phone: Option<String>,
    /// An e-mail address; an empty string removes it.
    #[schema(example = "olga@example.ru", max_length = 254)]
    pub email: Option<String>,
}

/// Changes a person's name, phone and e-mail; the change goes to their amoCRM contact (through
/// the CRM sync's queue, retried until amoCRM takes it).
#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "contacts",
    params(("id" = Uuid, Path, description = "contact id")), request_body = ContactPatchIn,
    responses((status = 200, body = ContactOutFull), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json", description = "the key's role may not change people"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such contact in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body does not parse, or `name`, `phone` or `email` is not valid (named in `fields`); nothing was changed")))]
pub async fn patch_contact(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ContactId>,
    ApiJson(b): ApiJson<ContactPatchIn>,
) -> Result<Json<ContactOutFull>, ApiError> {
    let change = PersonChange {
        name: b.name,
        phone: b.phone,
        email: b.email,
    };
    let p = contacts::update_person(&st.core, &a, id, &change).await?;
    Ok(Json(full(&st, &a, p).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct MergeIn {
    /// The other person (any of their contact ids).
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub other_id: Uuid,
}

/// Merges two people who are one customer writing from two messengers: the one seen first is
/// kept (its id answers), the other's identities and conversations become its own, and both
/// use the kept amoCRM contact from now on (their deals are linked to it; the other amoCRM
/// contact is left in amoCRM, unused).
#[utoipa::path(post, path = "/api/v1/contacts/{id}/merge", tag = "contacts",
    params(("id" = Uuid, Path, description = "contact id")), request_body = MergeIn,
    responses((status = 200, body = ContactOutFull), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json", description = "the key's role may not merge people"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "either contact is not in this company; nothing was changed"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body does not parse, or `other_id` is the same person (`contact_merge_self`); nothing was changed")))]
pub async fn merge_contact(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ContactId>,
    ApiJson(b): ApiJson<MergeIn>,
) -> Result<Json<ContactOutFull>, ApiError> {
    let p = contacts::merge_people(&st.core, &a, id, ContactId(b.other_id)).await?;
    Ok(Json(full(&st, &a, p).await?))
}
