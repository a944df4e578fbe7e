//! The customer card: beside the thread in the inbox (a collapsible section on phones) and as
//! a page of its own (`/app/contacts/{id}`), where a refused change is shown again with the
//! message by the field. Changing a person's name, phone and e-mail, and merging two people
//! after finding the other by name or phone and confirming.

use super::{render, render_status, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chatter_core::crm::sync::{person_crm, DealView, PersonCrm};
use chatter_core::inbox::contacts::{self, Person, PersonChange};
use chatter_core::{Actor, CoreError};
use chatter_domain::{ContactId, ConversationId, ConversationStatus, Permission};
use chatter_store::entity::contact;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/contacts/{id}", get(contact_page).post(update_contact))
        .route(
            "/app/contacts/{id}/merge",
            get(merge_page).post(merge_contact),
        )
}

/// What the card shows.
pub struct CardView {
    pub person: Person,
    /// `None`: no CRM connected.
    pub crm: Option<PersonCrm>,
    /// The conversation the card is beside (its deal is the one shown first).
    pub current: Option<ConversationId>,
    pub deal: Option<DealView>,
    pub can_reply: bool,
    /// Open without a click (its own page, or a refused change).
    pub open: bool,
    /// What the edit form shows (as typed, after a refusal).
    pub name: String,
    pub phone: String,
    pub email: String,
}

impl CardView {
    /// The conversation's id for links back to it (`back=`), or empty.
    pub fn back(&self) -> String {
        self.current.map(|c| c.to_string()).unwrap_or_default()
    }

    pub fn is_current(&self, id: &ConversationId) -> bool {
        self.current.as_ref() == Some(id)
    }

    /// Where to go after a change: the conversation the card was opened beside, else its page.
    fn after(&self) -> String {
        match self.current {
            Some(c) => format!("/app/inbox/{c}"),
            None => format!("/app/contacts/{}", self.person.contact.id),
        }
    }
}

/// The card of person `p` beside conversation `current`.
async fn view(
    st: &AppState,
    actor: &Actor,
    p: Person,
    current: Option<ConversationId>,
) -> Result<CardView, AppError> {
    let crm = person_crm(&st.core, actor, &p.identity_ids(), &p.conversation_ids()).await?;
    // The deal of the conversation beside; on its own page, the newest conversation's.
    let deal_of = current.or_else(|| p.conversations.first().map(|c| c.conversation.id));
    let deal = crm
        .as_ref()
        .and_then(|c| deal_of.and_then(|d| c.deals.get(&d).cloned()));
    Ok(CardView {
        name: p.contact.name.clone(),
        phone: p.contact.phone.clone().unwrap_or_default(),
        email: p.contact.email.clone().unwrap_or_default(),
        crm,
        current,
        deal,
        can_reply: actor.role.can(Permission::Reply),
        open: false,
        person: p,
    })
}

/// The card beside an open conversation in the inbox.
pub(crate) async fn card(
    st: &AppState,
    actor: &Actor,
    conversation: ConversationId,
) -> Result<CardView, AppError> {
    let p = contacts::person_of_conversation(&st.core, actor, conversation).await?;
    view(st, actor, p, Some(conversation)).await
}

#[derive(Template)]
#[template(path = "app/contact.html")]
struct ContactTpl {
    p: Page,
    c: CardView,
}

#[derive(Default, serde::Deserialize)]
struct Back {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    back: Option<ConversationId>,
}

/// A conversation given as `back` that is the person's (anything else is ignored).
fn back_of(p: &Person, back: Option<ConversationId>) -> Option<ConversationId> {
    back.filter(|b| p.conversations.iter().any(|c| c.conversation.id == *b))
}

async fn contact_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ContactId>,
    Query(b): Query<Back>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let p = contacts::person(&st.core, &actor, id).await?;
    let current = back_of(&p, b.back);
    let mut c = view(&st, &actor, p, current).await?;
    c.open = true;
    Ok(render(ContactTpl {
        p: Page::new(&ctx, "inbox"),
        c,
    }))
}

#[derive(serde::Deserialize)]
struct EditForm {
    name: String,
    phone: String,
    email: String,
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    back: Option<ConversationId>,
}

async fn update_contact(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ContactId>,
    CsrfForm(f): CsrfForm<EditForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let change = PersonChange {
        name: Some(f.name.clone()),
        phone: Some(f.phone.clone()),
        email: Some(f.email.clone()),
    };
    match contacts::update_person(&st.core, &actor, id, &change).await {
        Ok(p) => {
            let current = back_of(&p, f.back);
            let c = view(&st, &actor, p, current).await?;
            Ok(Redirect::to(&c.after()).into_response())
        }
        Err(CoreError::Invalid(errs)) => {
            let p = contacts::person(&st.core, &actor, id).await?;
            let current = back_of(&p, f.back);
            let mut c = view(&st, &actor, p, current).await?;
            c.open = true;
            c.name = f.name;
            c.phone = f.phone;
            c.email = f.email;
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                ContactTpl {
                    p: Page::new(&ctx, "inbox").errors(errs),
                    c,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "app/contact_merge.html")]
struct MergeTpl {
    p: Page,
    c: CardView,
    q: String,
    /// People found by `q` (the person themselves left out).
    found: Vec<contact::Model>,
    /// The person picked, to confirm.
    other: Option<Person>,
}

#[derive(serde::Deserialize)]
struct MergeQuery {
    #[serde(default)]
    q: String,
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    other: Option<ContactId>,
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    back: Option<ConversationId>,
}

async fn merge_tpl(
    st: &AppState,
    ctx: &Ctx,
    id: ContactId,
    q: &MergeQuery,
    errors: Vec<chatter_domain::FieldError>,
) -> Result<MergeTpl, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Reply)?;
    let p = contacts::person(&st.core, &actor, id).await?;
    let current = back_of(&p, q.back);
    let text: String = q.q.trim().chars().take(200).collect();
    let found = if text.is_empty() {
        Vec::new()
    } else {
        contacts::list_people(&st.core, &actor, Some(&text), None, 20)
            .await?
            .into_iter()
            .filter(|c| c.id != p.contact.id)
            .collect()
    };
    let other = match q.other {
        Some(o) => Some(contacts::person(&st.core, &actor, o).await?),
        None => None,
    };
    let c = view(st, &actor, p, current).await?;
    Ok(MergeTpl {
        p: Page::new(ctx, "inbox").errors(errors),
        c,
        q: text,
        found,
        other,
    })
}

async fn merge_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ContactId>,
    Query(q): Query<MergeQuery>,
) -> Result<Response, AppError> {
    Ok(render(merge_tpl(&st, &ctx, id, &q, Vec::new()).await?))
}

#[derive(serde::Deserialize)]
struct MergeForm {
    other_id: ContactId,
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    back: Option<ConversationId>,
}

async fn merge_contact(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ContactId>,
    CsrfForm(f): CsrfForm<MergeForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match contacts::merge_people(&st.core, &actor, id, f.other_id).await {
        Ok(p) => {
            let current = back_of(&p, f.back);
            let c = view(&st, &actor, p, current).await?;
            Ok(Redirect::to(&c.after()).into_response())
        }
        Err(CoreError::Invalid(errs)) => {
            let q = MergeQuery {
                q: String::new(),
                other: None,
                back: f.back,
            };
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                merge_tpl(&st, &ctx, id, &q, errs).await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}
