//! Reply templates (Automation → «Шаблоны ответов», `/app/automation/templates`): the list by
//! category, a new template, one template's edit page with a preview filled with a
//! conversation's values (the most recent, or `?conversation=`), and deleting with a
//! confirmation. The forms are `multipart/form-data` (a template may keep a file), read here
//! with the file bounded while it streams; the company's templates are kept by those who
//! manage settings, one's own by oneself.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::multipart::Multipart;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::inbox::templates::{
    self as core_templates, FileChange, Scope, TemplateInput, Values, BODY_MAX, CATEGORY_MAX,
    FILE_MAX_BYTES, TITLE_MAX,
};
use chatter_core::inbox::Upload;
use chatter_core::{Actor, CoreError};
use chatter_domain::template::{self, VARIABLES};
use chatter_domain::{ConversationId, Permission};
use chatter_store::entity::reply_template;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/automation/templates", get(list_page))
        .route("/app/automation/templates/new", get(new_page))
        .route("/app/automation/templates/{id}", get(edit_page))
        .route("/app/automation/templates/{id}/delete", post(delete))
        .route("/app/inbox/{id}/templates", get(picker))
}

/// The forms that may carry a file, under the upload routes' body limit.
pub fn upload_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/app/automation/templates/create",
            post(create).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/app/automation/templates/{id}/save",
            post(save).layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// One group of the list: a category (empty: none) and its templates.
struct Group {
    category: String,
    items: Vec<Item>,
}

struct Item {
    t: reply_template::Model,
    can_change: bool,
    /// The text in pieces: (text, is a variable, shown as code).
    pieces: Vec<(String, bool)>,
}

/// The text with its variables marked, as the list shows it.
fn pieces(body: &str) -> Vec<(String, bool)> {
    match template::parse(body) {
        Ok(parts) => parts
            .into_iter()
            .map(|p| match p {
                template::Part::Text(t) => (t, false),
                template::Part::Var { name, fallback } => match fallback {
                    Some(f) => (format!("{{{name}|{f}}}"), true),
                    None => (format!("{{{name}}}"), true),
                },
            })
            .collect(),
        Err(_) => vec![(body.to_owned(), false)],
    }
}

fn may_change(actor: &Actor, t: &reply_template::Model) -> bool {
    match t.owner_id {
        None => actor.role.can(Permission::Manage),
        Some(o) => Some(o) == actor.user_id.map(chatter_domain::UserId::uuid),
    }
}

#[derive(Template)]
#[template(path = "app/templates.html")]
struct ListTpl {
    p: Page,
    groups: Vec<Group>,
    q: String,
}

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    ok: Option<String>,
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(lq): Query<ListQuery>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let q: String = lq.q.unwrap_or_default().chars().take(200).collect();
    let ts = core_templates::list_templates(&st.core, &actor, Some(&q)).await?;
    let mut groups: Vec<Group> = Vec::new();
    for t in ts {
        let item = Item {
            can_change: may_change(&actor, &t),
            pieces: pieces(&t.body),
            t,
        };
        match groups.last_mut() {
            Some(g) if g.category == item.t.category => g.items.push(item),
            _ => groups.push(Group {
                category: item.t.category.clone(),
                items: vec![item],
            }),
        }
    }
    let p = Page::new(&ctx, "automation").flash(&Flash { ok: lq.ok });
    Ok(render(ListTpl { p, groups, q }))
}

/// The form as typed, and what the page shows beside it.
#[derive(Template)]
#[template(path = "app/template_form.html")]
struct FormTpl {
    p: Page,
    /// None: a new template.
    id: Option<Uuid>,
    personal: bool,
    /// The actor may choose the company's scope (manages settings).
    may_company: bool,
    category: String,
    title: String,
    body: String,
    /// The kept file's name, if any.
    file_name: Option<String>,
    categories: Vec<String>,
    variables: &'static [&'static str],
    /// The text rendered with `values`; None when it does not read.
    preview: Option<String>,
    /// Where the preview's values come from (translated), and the values.
    preview_from: String,
    values: Vec<(&'static str, String)>,
    maxes: (usize, usize, usize),
}

/// The values a preview uses: the chosen conversation's, else the most recent one's, else
/// examples.
async fn preview_values(
    st: &AppState,
    actor: &Actor,
    p: &Page,
    conversation: Option<ConversationId>,
) -> Result<(String, Values), AppError> {
    if let Some(c) = conversation {
        if let Ok(v) = core_templates::values_for(&st.core, actor, c).await {
            let who = v.client_name.clone().unwrap_or_default();
            return Ok((
                format!("{} «{who}»", p.t("templates.preview_conversation")),
                v,
            ));
        }
    }
    match core_templates::recent_values(&st.core, actor).await? {
        Some((_, v)) => {
            let who = v.client_name.clone().unwrap_or_default();
            Ok((format!("{} «{who}»", p.t("templates.preview_recent")), v))
        }
        None => Ok((
            p.t("templates.preview_sample").to_owned(),
            Values::sample(&p.company_name, &p.user_name),
        )),
    }
}

async fn form_page(
    st: &AppState,
    actor: &Actor,
    p: Page,
    t: Option<&reply_template::Model>,
    typed: Option<Typed>,
    conversation: Option<ConversationId>,
) -> Result<FormTpl, AppError> {
    let (from, values) = preview_values(st, actor, &p, conversation).await?;
    let may_company = actor.role.can(Permission::Manage);
    let typed = typed.unwrap_or_else(|| match t {
        Some(t) => Typed {
            personal: t.owner_id.is_some(),
            category: t.category.clone(),
            title: t.title.clone(),
            body: t.body.clone(),
            ..Typed::default()
        },
        None => Typed {
            personal: !may_company,
            ..Typed::default()
        },
    });
    let preview = template::parse(&typed.body)
        .ok()
        .map(|parts| template::render_parts(&parts, |n| values.get(n)));
    let mut categories: Vec<String> = core_templates::list_templates(&st.core, actor, None)
        .await?
        .into_iter()
        .map(|t| t.category)
        .filter(|c| !c.is_empty())
        .collect();
    categories.dedup();
    Ok(FormTpl {
        p,
        id: t.map(|t| t.id),
        personal: typed.personal,
        may_company,
        category: typed.category,
        title: typed.title,
        body: typed.body,
        file_name: t.and_then(|t| t.file_name.clone()),
        categories,
        variables: &VARIABLES,
        preview,
        preview_from: from,
        values: values
            .pairs()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        maxes: (TITLE_MAX, CATEGORY_MAX, BODY_MAX),
    })
}

#[derive(serde::Deserialize, Default)]
struct EditQuery {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    conversation: Option<ConversationId>,
}

async fn new_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<EditQuery>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Read)?;
    let p = Page::new(&ctx, "automation");
    Ok(render(
        form_page(&st, &actor, p, None, None, q.conversation).await?,
    ))
}

async fn edit_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    Query(q): Query<EditQuery>,
    Query(f): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let t = core_templates::get_template(&st.core, &actor, id).await?;
    let p = Page::new(&ctx, "automation").flash(&f);
    Ok(render(
        form_page(&st, &actor, p, Some(&t), None, q.conversation).await?,
    ))
}

/// The multipart form's fields.
#[derive(Default)]
struct Typed {
    personal: bool,
    category: String,
    title: String,
    body: String,
    remove_file: bool,
    preview: bool,
    csrf: Option<String>,
    file: Option<Upload>,
}

impl Typed {
    fn set(&mut self, name: &str, value: String) {
        let value = value.replace('\u{0}', "");
        match name {
            "scope" => self.personal = value == "personal",
            "category" => self.category = value,
            "title" => self.title = value,
            "body" => self.body = value.replace("\r\n", "\n"),
            "remove_file" => self.remove_file = !value.is_empty(),
            "action" => self.preview = value == "preview",
            "_csrf" => self.csrf = Some(value),
            _ => {}
        }
    }
}

enum FormError {
    TooLarge,
    Malformed(String),
}

async fn read_form(mut mp: Multipart) -> Result<Typed, FormError> {
    const TEXT_MAX: usize = 64 * 1024;
    let bad = |e: axum::extract::multipart::MultipartError| FormError::Malformed(e.body_text());
    let mut f = Typed::default();
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let mime_type = field.content_type().map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if bytes.len() + chunk.len() > FILE_MAX_BYTES {
                    return Err(FormError::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            if !(file_name.is_empty() && bytes.is_empty()) {
                f.file = Some(Upload {
                    file_name,
                    mime_type,
                    bytes,
                });
            }
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if value.len() + chunk.len() > TEXT_MAX {
                return Err(FormError::Malformed(format!(
                    "the field {name} is too long"
                )));
            }
            value.extend_from_slice(&chunk);
        }
        f.set(&name, String::from_utf8_lossy(&value).into_owned());
    }
    Ok(f)
}

/// Reads the form (`multipart/form-data` with its file, or URL-encoded without one) and
/// checks its CSRF token (the header's or the form's) before anything else.
async fn read_checked(
    ctx: &Ctx,
    headers: &HeaderMap,
    req: axum::extract::Request,
) -> Result<Result<Typed, Response>, AppError> {
    let csrf_ok = |given: Option<&str>| {
        !ctx.csrf.is_empty()
            && given.is_some_and(|g| chatter_core::ct_eq(g.as_bytes(), ctx.csrf.as_bytes()))
    };
    let header_csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let body = axum::body::to_bytes(req.into_body(), 256 * 1024)
            .await
            .unwrap_or_default();
        let mut f = Typed::default();
        for (k, v) in
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default()
        {
            f.set(&k, v);
        }
        if !csrf_ok(header_csrf.as_deref().or(f.csrf.as_deref())) {
            return Err(AppError::Csrf);
        }
        return Ok(Ok(f));
    }
    let mp = match Multipart::from_request(req, &()).await {
        Ok(mp) => mp,
        Err(_) if !csrf_ok(header_csrf.as_deref()) => return Err(AppError::Csrf),
        Err(e) => {
            let r = (
                StatusCode::BAD_REQUEST,
                format!("malformed form: {}", e.body_text()),
            );
            return Ok(Err(r.into_response()));
        }
    };
    match read_form(mp).await {
        Ok(f) if csrf_ok(header_csrf.as_deref().or(f.csrf.as_deref())) => Ok(Ok(f)),
        Ok(_) => Err(AppError::Csrf),
        Err(FormError::TooLarge) => {
            let r = (StatusCode::PAYLOAD_TOO_LARGE, "the file is too large");
            Ok(Err(r.into_response()))
        }
        Err(FormError::Malformed(m)) => {
            let r = (StatusCode::BAD_REQUEST, format!("malformed form: {m}"));
            Ok(Err(r.into_response()))
        }
    }
}

fn input_of(f: &mut Typed) -> TemplateInput {
    let file = match f.file.take() {
        Some(u) => FileChange::Set(u),
        None if f.remove_file => FileChange::Remove,
        None => FileChange::Keep,
    };
    TemplateInput {
        scope: if f.personal {
            Scope::Personal
        } else {
            Scope::Company
        },
        category: f.category.clone(),
        title: f.title.clone(),
        body: f.body.clone(),
        file,
    }
}

/// The form shown again: with its errors (422), or as a preview of what was typed (200).
async fn again(
    st: &AppState,
    ctx: &Ctx,
    t: Option<&reply_template::Model>,
    typed: Typed,
    errs: Vec<chatter_domain::FieldError>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let refused = !errs.is_empty();
    let p = Page::new(ctx, "automation").errors(errs);
    let page = form_page(st, &actor, p, t, Some(typed), None).await?;
    Ok(if refused {
        render_status(StatusCode::UNPROCESSABLE_ENTITY, page)
    } else {
        render(page)
    })
}

/// The text's own refusal while previewing (nothing is saved either way).
fn preview_errors(body: &str) -> Vec<chatter_domain::FieldError> {
    match template::parse(body) {
        Ok(_) => Vec::new(),
        Err(e) => vec![core_templates::body_error(&e)],
    }
}

async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    let mut typed = match read_checked(&ctx, &headers, req).await? {
        Ok(t) => t,
        Err(r) => return Ok(r),
    };
    let actor = ctx.actor()?;
    if typed.preview {
        let errs = preview_errors(&typed.body);
        return again(&st, &ctx, None, typed, errs).await;
    }
    match core_templates::create_template(&st.core, &actor, input_of(&mut typed)).await {
        Ok(t) => Ok(
            Redirect::to(&format!("/app/automation/templates/{}?ok=saved", t.id)).into_response(),
        ),
        Err(CoreError::Invalid(errs)) => again(&st, &ctx, None, typed, errs).await,
        Err(e) => Err(e.into()),
    }
}

async fn save(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    let mut typed = match read_checked(&ctx, &headers, req).await? {
        Ok(t) => t,
        Err(r) => return Ok(r),
    };
    let actor = ctx.actor()?;
    let old = core_templates::get_template(&st.core, &actor, id).await?;
    typed.personal = old.owner_id.is_some();
    if typed.preview {
        let errs = preview_errors(&typed.body);
        return again(&st, &ctx, Some(&old), typed, errs).await;
    }
    match core_templates::update_template(&st.core, &actor, id, input_of(&mut typed)).await {
        Ok(_) => {
            Ok(Redirect::to(&format!("/app/automation/templates/{id}?ok=saved")).into_response())
        }
        Err(CoreError::Invalid(errs)) => again(&st, &ctx, Some(&old), typed, errs).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn delete(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    core_templates::delete_template(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to("/app/automation/templates?ok=template_deleted").into_response())
}

/// Whether the request asks for JSON (the reply box's script).
pub(crate) fn wants_json(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

#[derive(serde::Deserialize, Default)]
struct PickQuery {
    q: Option<String>,
}

/// A template as the reply box's list offers it: rendered for the conversation.
#[derive(serde::Serialize)]
struct Offered {
    id: Uuid,
    title: String,
    category: String,
    personal: bool,
    text: String,
    file: Option<String>,
}

#[derive(Template)]
#[template(path = "inbox/templates.html")]
struct PickerTpl {
    p: Page,
    conversation: ConversationId,
    title: String,
    q: String,
    offered: Vec<Offered>,
}

/// The templates the member may use in conversation `id`, rendered with its values and
/// filtered by `q`: JSON for the reply box's list, else a page whose «Вставить» reopens the
/// conversation with the text as the draft.
async fn picker(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    Query(pq): Query<PickQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Reply)?;
    let row = chatter_core::inbox::get_conversation(&st.core, &actor, id).await?;
    let q: String = pq.q.unwrap_or_default().chars().take(200).collect();
    let values = core_templates::values_for(&st.core, &actor, id).await?;
    let offered: Vec<Offered> = core_templates::list_templates(&st.core, &actor, Some(&q))
        .await?
        .into_iter()
        .take(50)
        .map(|t| Offered {
            text: template::render(&t.body, |n| values.get(n)),
            id: t.id,
            title: t.title,
            category: t.category,
            personal: t.owner_id.is_some(),
            file: t.file_name,
        })
        .collect();
    if wants_json(&headers) {
        return Ok(axum::Json(offered).into_response());
    }
    let title = row
        .conversation
        .title
        .clone()
        .unwrap_or_else(|| row.contact.name.clone());
    Ok(render(PickerTpl {
        p: Page::new(&ctx, "inbox"),
        conversation: id,
        title,
        q,
        offered,
    }))
}
