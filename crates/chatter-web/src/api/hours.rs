//! Working hours (requirement R5.2) through the API: the company's, or a source's own, read,
//! replaced whole, or (for a source) removed so the company's apply again.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_core::automation::hours::{self as core_hours, HoursView};
use chatter_core::CoreError;
use chatter_domain::hours::{clock, parse_time, Day, Hours, Span, WEEKDAYS};
use chatter_domain::{FieldError, SourceId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoursQuery {
    /// A source's hours; without it, the company's.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub source_id: Option<Uuid>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceHoursQuery {
    /// The source whose own hours are removed.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub source_id: Uuid,
}

/// One open stretch of a day, in the hours' time zone; `to` may be `24:00`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SpanIo {
    #[schema(example = "09:00", pattern = r"^[0-9]{1,2}:[0-9]{2}$")]
    pub from: String,
    #[schema(example = "18:00", pattern = r"^[0-9]{1,2}:[0-9]{2}$")]
    pub to: String,
}

/// Monday to Sunday; an empty list is a day off. Breaks are the gaps between spans.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WeekIo {
    #[schema(max_items = 12)]
    pub mon: Vec<SpanIo>,
    #[schema(max_items = 12)]
    pub tue: Vec<SpanIo>,
    #[schema(max_items = 12)]
    pub wed: Vec<SpanIo>,
    #[schema(max_items = 12)]
    pub thu: Vec<SpanIo>,
    #[schema(max_items = 12)]
    pub fri: Vec<SpanIo>,
    #[schema(max_items = 12)]
    pub sat: Vec<SpanIo>,
    #[schema(max_items = 12)]
    pub sun: Vec<SpanIo>,
}

/// A date with hours of its own: a short day, or (no spans) a holiday.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DayIo {
    #[schema(example = "2026-12-31", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub date: String,
    #[schema(max_items = 12)]
    pub spans: Vec<SpanIo>,
}

/// Working hours: a time zone, a week and one-off days.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HoursIo {
    /// An IANA time zone, e.g. `Europe/Moscow`.
    #[schema(example = "Europe/Moscow", max_length = 64)]
    pub zone: String,
    pub week: WeekIo,
    #[serde(default)]
    #[schema(max_items = 366)]
    pub days: Vec<DayIo>,
}

/// Open or closed at the time of the answer, and until when (`null`: not within a year).
#[derive(Serialize, ToSchema)]
pub struct NowOut {
    pub open: bool,
    /// RFC 3339, UTC.
    pub until: Option<String>,
}

/// The hours that apply to the company, or to one source.
#[derive(Serialize, ToSchema)]
pub struct HoursOut {
    /// The source asked about; `null` for the company.
    pub source_id: Option<Uuid>,
    /// For a source: whether it has hours of its own (else the company's apply).
    pub own: bool,
    /// What applies; `null` when no hours are set.
    pub hours: Option<HoursIo>,
    pub now: Option<NowOut>,
}

fn spans_out(spans: &[Span]) -> Vec<SpanIo> {
    spans
        .iter()
        .map(|s| SpanIo {
            from: clock(s.from),
            to: clock(s.to),
        })
        .collect()
}

fn out(v: HoursView) -> HoursOut {
    HoursOut {
        source_id: v.source.map(|s| s.0),
        own: v.own,
        hours: v.hours.map(|h| {
            let [mon, tue, wed, thu, fri, sat, sun] = h.week.map(|d| spans_out(&d));
            HoursIo {
                zone: h.zone,
                week: WeekIo {
                    mon,
                    tue,
                    wed,
                    thu,
                    fri,
                    sat,
                    sun,
                },
                days: h
                    .days
                    .iter()
                    .map(|d| DayIo {
                        date: d.date.to_string(),
                        spans: spans_out(&d.spans),
                    })
                    .collect(),
            }
        }),
        now: v.now.map(|n| NowOut {
            open: n.is_open(),
            until: n.until().map(|t| t.to_rfc3339()),
        }),
    }
}

/// The body as hours; a time or date that does not read is refused by its field.
fn read(b: HoursIo) -> Result<Hours, CoreError> {
    let mut errors = Vec::new();
    let spans = |field: &'static str, list: &[SpanIo], errors: &mut Vec<FieldError>| {
        let read: Option<Vec<Span>> = list
            .iter()
            .map(|s| {
                Some(Span {
                    from: parse_time(&s.from)?,
                    to: parse_time(&s.to)?,
                })
            })
            .collect();
        read.unwrap_or_else(|| {
            errors.push(FieldError::new(field, "hours.err_time"));
            Vec::new()
        })
    };
    let w = &b.week;
    let lists = [&w.mon, &w.tue, &w.wed, &w.thu, &w.fri, &w.sat, &w.sun];
    let week = std::array::from_fn(|i| spans(WEEKDAYS[i], lists[i], &mut errors));
    let mut days = Vec::new();
    for (i, d) in b.days.iter().enumerate() {
        match NaiveDate::parse_from_str(&d.date, "%Y-%m-%d") {
            Ok(date) => days.push(Day {
                date,
                spans: spans("days", &d.spans, &mut errors),
            }),
            Err(_) => errors.push(FieldError {
                field: "days",
                key: "hours.err_date",
                limit: Some(i + 1),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(CoreError::Invalid(errors));
    }
    Ok(Hours {
        zone: b.zone,
        week,
        days,
    })
}

/// A source id that is not this company's is an object not found.
fn source(id: Option<Uuid>) -> Option<SourceId> {
    id.map(SourceId)
}

/// The working hours that apply to the company, or to a source (its own, else the company's).
#[utoipa::path(get, path = "/api/v1/working-hours", tag = "automation", params(HoursQuery),
    responses((status = 200, body = HoursOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such source in this company")))]
pub async fn get_hours(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<HoursQuery>,
) -> Result<Json<HoursOut>, ApiError> {
    Ok(Json(out(core_hours::get(
        &st.core,
        &a,
        source(q.source_id),
    )
    .await?)))
}

/// Replaces the company's working hours, or gives a source hours of its own. Checked whole:
/// nothing is stored when a field is refused.
#[utoipa::path(put, path = "/api/v1/working-hours", tag = "automation", params(HoursQuery), request_body = HoursIo,
    responses((status = 200, body = HoursOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such source in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema; or, by field: an unknown `zone`, a time that is not 00:00–24:00, a span that ends before it starts, overlapping spans (`mon`…`sun`), a date that does not exist or is given twice (`days`, with the entry's number in `limit`)")))]
pub async fn put_hours(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<HoursQuery>,
    ApiJson(b): ApiJson<HoursIo>,
) -> Result<Json<HoursOut>, ApiError> {
    let src = source(q.source_id);
    if let Some(s) = src {
        // A foreign source is 404 before the body is judged.
        chatter_core::connectors::model::get(&st.core, &a, s).await?;
    }
    let hours = read(b)?;
    Ok(Json(out(core_hours::save(&st.core, &a, src, hours).await?)))
}

/// Removes a source's own working hours: the company's apply to it again.
#[utoipa::path(delete, path = "/api/v1/working-hours", tag = "automation", params(SourceHoursQuery),
    responses((status = 200, body = HoursOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`source_id` is missing or not a UUID (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such source in this company")))]
pub async fn delete_hours(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<SourceHoursQuery>,
) -> Result<Json<HoursOut>, ApiError> {
    Ok(Json(out(core_hours::reset(
        &st.core,
        &a,
        SourceId(q.source_id),
    )
    .await?)))
}
