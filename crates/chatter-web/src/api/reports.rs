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
    /// Open conversations whose latest message is the customer's.
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
