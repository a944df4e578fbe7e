//! Reply templates (requirement R5.3) through the API: the company's templates listed,
//! created, changed and deleted with the refusals the page gives, and one template rendered
//! for a conversation. A key acts for no member, so it sees and keeps the company's templates
//! only; members' own templates are theirs alone.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::inbox::templates::{
    self as core_templates, FileChange, Scope, TemplateInput, BODY_MAX, CATEGORY_MAX, TITLE_MAX,
};
use chatter_domain::ConversationId;
use chatter_store::entity::reply_template;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A template's file (sent with the reply, the text as its caption).
#[derive(Serialize, ToSchema)]
pub struct TemplateFileOut {
    pub name: String,
    pub mime_type: String,
    pub size: i64,
}

/// A reply template.
#[derive(Serialize, ToSchema)]
pub struct TemplateOut {
    pub id: Uuid,
    /// Empty: no category.
    pub category: String,
    pub title: String,
    /// The text with its variables: `{client_name}`, `{company_name}`, `{manager_name}`,
    /// `{source_name}`, `{deal_id}` and, synced with amoCRM, `{client_phone}`, `{client_email}`,
    /// `{deal_pipeline}`, `{deal_stage}`, `{deal_responsible}`; each with an optional fallback
    /// (`{client_name|клиент}`); `{{` and `}}` are literal braces.
    pub body: String,
    /// A member's own template (never listed to keys); false: the company's.
    pub personal: bool,
    #[schema(nullable)]
    pub file: Option<TemplateFileOut>,
    /// Unix milliseconds.
    pub updated_at: i64,
}

pub fn template_out(t: reply_template::Model) -> TemplateOut {
    let file = match (t.file_name, t.file_size) {
        (Some(name), Some(size)) => Some(TemplateFileOut {
            name,
            mime_type: t.file_mime.unwrap_or_default(),
            size,
        }),
        _ => None,
    };
    TemplateOut {
        id: t.id,
        category: t.category,
        title: t.title,
        body: t.body,
        personal: t.owner_id.is_some(),
        file,
        updated_at: t.updated_at,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplatesQuery {
    /// Only templates whose title, category or text contains this (any letter case).
    #[param(max_length = 200)]
    pub q: Option<String>,
}

/// The company's templates, by category and title.
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", params(TemplatesQuery),
    responses((status = 200, body = Vec<TemplateOut>), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query does not read (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`q` is over 200 characters (`too_long`)")))]
pub async fn list_templates(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<TemplatesQuery>,
) -> Result<Json<Vec<TemplateOut>>, ApiError> {
    if q.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(
            chatter_core::CoreError::Invalid(vec![chatter_domain::FieldError::too_long("q", 200)])
                .into(),
        );
    }
    let q: Option<String> = q.q;
    let ts = core_templates::list_templates(&st.core, &a, q.as_deref()).await?;
    Ok(Json(ts.into_iter().map(template_out).collect()))
}

/// One template of the company.
#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "templates",
    params(("id" = Uuid, Path, description = "template id")),
    responses((status = 200, body = TemplateOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such template of this company")))]
pub async fn get_template(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TemplateOut>, ApiError> {
    Ok(Json(template_out(
        core_templates::get_template(&st.core, &a, id).await?,
    )))
}

/// A file given with a template, base64-encoded: at most 20 MB decoded, not a program; the
/// whole request stays within the API's body limit (1 MB unless the installation raises it),
/// so larger files are given on the template's page.
#[derive(Deserialize, ToSchema)]
pub struct TemplateFileIn {
    #[schema(example = "Прайс.pdf", min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(example = "application/pdf", max_length = 200)]
    pub mime_type: Option<String>,
    /// The file's bytes in standard base64.
    #[schema(min_length = 1)]
    pub data_base64: String,
}

/// A template as created or replaced.
#[derive(Deserialize, ToSchema)]
pub struct TemplateIn {
    /// At most 60 characters; empty or absent: no category.
    #[serde(default)]
    #[schema(example = "Доставка", max_length = 60)]
    pub category: String,
    /// 1 to 100 characters, one line.
    #[schema(
        example = "Сроки доставки",
        min_length = 1,
        max_length = 100,
        pattern = r"[^\s\u0000-\u001F\u007F-\u009F]"
    )]
    pub title: String,
    /// 1 to 4000 characters; every `{` opens a known variable (or is doubled).
    #[schema(
        example = "Здравствуйте, {client_name|клиент}! Доставим завтра.",
        min_length = 1,
        max_length = 4000,
        pattern = r"\S"
    )]
    pub body: String,
    /// On create: the file to keep. On replace: a new file; absent keeps the present one.
    #[schema(nullable)]
    pub file: Option<TemplateFileIn>,
    /// On replace: true takes the present file away.
    #[serde(default)]
    pub remove_file: bool,
}

const TEMPLATE_422: &str = "the body is not JSON or does not match the schema, or a field is refused, nothing saved: `title` (`required`, `too_long`, `control_chars`, `bidi_chars`), `category` (`too_long`, `control_chars`, `bidi_chars`), `body` (`required`, `too_long`, `bidi_chars`, `template_unclosed`, `template_stray`, `template_unknown_var`, `template_fallback_long`; `limit` is the 1-based position of the brace at fault), `file` (`file_base64`, `file_empty`, `file_too_large`, `file_executable`)";

fn input(b: TemplateIn) -> Result<TemplateInput, ApiError> {
    let file = match b.file {
        Some(f) => FileChange::Set(core_templates::file_from_base64(
            &f.name,
            f.mime_type.as_deref(),
            &f.data_base64,
        )?),
        None if b.remove_file => FileChange::Remove,
        None => FileChange::Keep,
    };
    Ok(TemplateInput {
        scope: Scope::Company,
        category: b.category,
        title: b.title,
        body: b.body,
        file,
    })
}

/// Creates a company template.
#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", request_body = TemplateIn,
    responses((status = 201, body = TemplateOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = TEMPLATE_422)))]
pub async fn create_template(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<TemplateIn>,
) -> Result<Response, ApiError> {
    let t = core_templates::create_template(&st.core, &a, input(b)?).await?;
    Ok((StatusCode::CREATED, Json(template_out(t))).into_response())
}

/// Replaces a company template's category, title and text (and its file, as `file` and
/// `remove_file` say).
#[utoipa::path(put, path = "/api/v1/templates/{id}", tag = "templates", request_body = TemplateIn,
    params(("id" = Uuid, Path, description = "template id")),
    responses((status = 200, body = TemplateOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such template of this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = TEMPLATE_422)))]
pub async fn put_template(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<TemplateIn>,
) -> Result<Json<TemplateOut>, ApiError> {
    let t = core_templates::update_template(&st.core, &a, id, input(b)?).await?;
    Ok(Json(template_out(t)))
}

/// Deletes a company template; one an auto-reply rule sends is refused (409), naming the rules.
#[utoipa::path(delete, path = "/api/v1/templates/{id}", tag = "templates",
    params(("id" = Uuid, Path, description = "template id")),
    responses((status = 204, description = "deleted"), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such template of this company"), (status = 409, body = ApiErrorBody, content_type = "application/problem+json", description = "auto-reply rules send this template (`in_use`; `detail` names them): change or delete them first")))]
pub async fn delete_template(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    core_templates::delete_template(&st.core, &a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A template rendered for one conversation.
#[derive(Serialize, ToSchema)]
pub struct RenderedOut {
    pub template_id: Uuid,
    pub conversation_id: Uuid,
    /// The text with this conversation's values; a variable without a value takes its
    /// fallback, else nothing (never raw braces).
    pub text: String,
    /// The template's file, sent with the reply.
    #[schema(nullable)]
    pub file: Option<TemplateFileOut>,
}

/// The template's text with the conversation's values, ready to send.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/templates/{template_id}/render", tag = "templates",
    params(("id" = Uuid, Path, description = "conversation id"), ("template_id" = Uuid, Path, description = "template id")),
    responses((status = 200, body = RenderedOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "an id is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation or template of this company")))]
pub async fn render_template(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath((id, template_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<RenderedOut>, ApiError> {
    let r = core_templates::render_for(&st.core, &a, ConversationId(id), template_id).await?;
    let out = template_out(r.template);
    Ok(Json(RenderedOut {
        template_id,
        conversation_id: id,
        text: r.text,
        file: out.file,
    }))
}

/// The longest fields, for the schema's limits to match the core's.
const _: () = assert!(TITLE_MAX == 100 && CATEGORY_MAX == 60 && BODY_MAX == 4000);
