//! The dashboard's figures through the API: what the owner sees on `/app`.

use super::{ApiActor, ApiError, ApiErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_core::reports;
use serde::Serialize;
use utoipa::ToSchema;

/// A median first-response time and how many conversations it covers.
#[derive(Serialize, ToSchema)]
pub struct MedianOut {
    /// Milliseconds; null when no conversation was answered.
    pub median_ms: Option<i64>,
    pub answered: usize,
}

#[derive(Serialize, ToSchema)]
pub struct GroupOut {
    /// The source's or the manager's name.
    pub name: String,
    pub first_response: MedianOut,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesOut {
    /// The source's name.
    pub source: String,
    /// Customer messages per company day, oldest first, starting at `since`.
    pub per_day: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardOut {
    /// Open conversations now.
    pub open: i64,
    /// Open conversations whose customer waits for an answer: their latest message came after
    /// the latest answer (an auto-reply is no answer).
    pub waiting: i64,
    pub new_today: i64,
    pub new_7_days: i64,
    /// Over the last 30 days.
    pub first_response: MedianOut,
    pub by_source: Vec<GroupOut>,
    /// By who sent the first answer.
    pub by_manager: Vec<GroupOut>,
    /// The first day of `series` (the company's midnight, Unix ms).
    pub since: i64,
    pub series: Vec<SeriesOut>,
}

fn median(m: reports::Median) -> MedianOut {
    MedianOut {
        median_ms: m.ms,
        answered: m.answered,
    }
}

fn groups(g: Vec<reports::Group>) -> Vec<GroupOut> {
    g.into_iter()
        .map(|g| GroupOut {
            name: g.name,
            first_response: median(g.median),
        })
        .collect()
}

/// The team's figures, as on the dashboard: conversations open and waiting now, new ones today
/// and in 7 days, first-response medians over 30 days, and customer messages per day per source.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "reports",
    responses((status = 200, body = DashboardOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn dashboard(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<DashboardOut>, ApiError> {
    let d = reports::dashboard(&st.core, &a).await?;
    Ok(Json(DashboardOut {
        open: d.open,
        waiting: d.waiting,
        new_today: d.new_today,
        new_7_days: d.new_7_days,
        first_response: median(d.first_response),
        by_source: groups(d.by_source),
        by_manager: groups(d.by_manager),
        since: d.since,
        series: d
            .series
            .into_iter()
            .map(|s| SeriesOut {
                source: s.name,
                per_day: s.per_day,
            })
            .collect(),
    }))
}

/// Times over some conversations: how many, median and 90th percentile (nearest rank).
#[derive(Serialize, ToSchema)]
pub struct TimesOut {
    pub count: usize,
    /// Milliseconds; null when `count` is 0.
    pub median_ms: Option<i64>,
    /// Milliseconds; null when `count` is 0.
    pub p90_ms: Option<i64>,
}

/// The company, a source or a manager over the period.
#[derive(Serialize, ToSchema)]
pub struct ReportLineOut {
    /// The source's or the manager's name; empty for the whole company.
    pub name: String,
    /// Conversations whose customer first wrote in the period (for a manager: those they
    /// answered first).
    pub conversations: i64,
    /// Until the first message to the customer.
    pub first_response: TimesOut,
    /// Until the conversation was first closed.
    pub resolution: TimesOut,
    pub messages_in: i64,
    pub messages_out: i64,
}

/// One company day.
#[derive(Serialize, ToSchema)]
pub struct ReportDayOut {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub conversations: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReportOut {
    /// The first day, `YYYY-MM-DD`.
    pub from: String,
    /// The last day, included.
    pub to: String,
    pub total: ReportLineOut,
    pub by_source: Vec<ReportLineOut>,
    pub by_manager: Vec<ReportLineOut>,
    pub days: Vec<ReportDayOut>,
}

/// The period of a report: company days `YYYY-MM-DD`, at most 366 of them. Without `from`
/// and `to` the last 30 days, today included; with one of them, 30 days from or to it.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct PeriodQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

fn times(t: reports::period::Times) -> TimesOut {
    TimesOut {
        count: t.count,
        median_ms: t.median_ms,
        p90_ms: t.p90_ms,
    }
}

fn line(l: reports::period::Line) -> ReportLineOut {
    ReportLineOut {
        name: l.name,
        conversations: l.conversations,
        first_response: times(l.first_response),
        resolution: times(l.resolution),
        messages_in: l.messages_in,
        messages_out: l.messages_out,
    }
}

async fn period_report(
    st: &AppState,
    a: &chatter_core::Actor,
    q: &PeriodQuery,
) -> Result<reports::period::Report, ApiError> {
    Ok(reports::period::report(
        &st.core,
        a,
        q.from.as_deref().unwrap_or(""),
        q.to.as_deref().unwrap_or(""),
    )
    .await?)
}

/// The reports page's figures over a period: first-response and resolution times (median and
/// p90) for the company, per source and per manager, and conversations and messages per day.
/// Owners' and admins' keys. A date that is not `YYYY-MM-DD`, a period ending before it starts
/// or longer than 366 days: 422 naming the field.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(PeriodQuery),
    responses((status = 200, body = ReportOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn report(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    super::ApiQuery(q): super::ApiQuery<PeriodQuery>,
) -> Result<Json<ReportOut>, ApiError> {
    let r = period_report(&st, &a, &q).await?;
    Ok(Json(ReportOut {
        from: r.from,
        to: r.to,
        total: line(r.total),
        by_source: r.by_source.into_iter().map(line).collect(),
        by_manager: r.by_manager.into_iter().map(line).collect(),
        days: r
            .days
            .into_iter()
            .map(|d| ReportDayOut {
                date: d.date,
                conversations: d.conversations,
                messages_in: d.messages_in,
                messages_out: d.messages_out,
            })
            .collect(),
    }))
}

/// The same report as CSV, one table: `group` (total, source, manager, day), `name`, `date`,
/// counts, and times in whole seconds (empty where none).
#[utoipa::path(get, path = "/api/v1/reports/csv", tag = "reports", params(PeriodQuery),
    responses((status = 200, body = String, content_type = "text/csv"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn report_csv(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    super::ApiQuery(q): super::ApiQuery<PeriodQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let r = period_report(&st, &a, &q).await?;
    let body = reports::period::to_csv(&r)?;
    let disposition = format!(
        "attachment; filename=\"chatter-report-{}-{}.csv\"",
        r.from, r.to
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
