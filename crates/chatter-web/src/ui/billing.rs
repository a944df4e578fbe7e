//! The plan page (`/app/billing`, «Тариф и оплата»): the plan or the trial and its days left,
//! the period, used against the limit, per source, a server-drawn chart of daily use with the
//! forecast for the period's end, why replies wait when they do, and the plans to move to
//! (payment comes in a later release, so choosing one says who switches it for now).

use super::{render, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use chatter_core::billing::{self, Overview};
use chatter_domain::Permission;
use chatter_store::entity::plan;

pub fn routes() -> Router<AppState> {
    Router::new().route("/app/billing", get(billing_page))
}

#[derive(Template)]
#[template(path = "app/billing.html")]
struct BillingTpl {
    p: Page,
    o: Overview,
    plans: Vec<plan::Model>,
    chart: String,
}

impl BillingTpl {
    fn state_key(&self) -> &'static str {
        use chatter_domain::SubscriptionState as S;
        match self.o.standing.sub.state {
            S::Trial => "billing.state.trial",
            S::Active => "billing.state.active",
            S::PastDue => "billing.state.past_due",
            S::Paused => "billing.state.paused",
            S::Cancelled => "billing.state.cancelled",
        }
    }

    fn blocked_key(&self) -> Option<&'static str> {
        use billing::gate::Block;
        self.o.standing.blocked.map(|b| match b {
            Block::OverLimit => "billing.blocked.over_limit",
            Block::TrialEnded => "billing.blocked.trial_ended",
            Block::Inactive => "billing.blocked.inactive",
        })
    }

    fn plan_name(&self) -> String {
        match &self.o.standing.plan {
            Some(p) => p.name.clone(),
            None => self.p.t("billing.trial").to_string(),
        }
    }

    fn days_left(&self) -> Option<i64> {
        self.o.standing.trial_days_left(self.o.now)
    }

    fn is_current(&self, p: &plan::Model) -> bool {
        self.o.standing.plan.as_ref().is_some_and(|c| c.id == p.id)
    }

    fn lim(&self, v: &Option<i64>) -> String {
        limit(&self.p, v)
    }

    fn rub(&self, v: &i64) -> String {
        rub(v)
    }

    /// A width for the used bar, in percent (at most 100).
    fn bar(&self) -> i64 {
        self.o.standing.percent().min(100)
    }
}

/// Kopecks as whole roubles with thin spaces between thousands: «1 990».
pub(super) fn rub(kopecks: &i64) -> String {
    let r = (kopecks / 100).to_string();
    let mut out = String::new();
    for (i, c) in r.chars().enumerate() {
        if i > 0 && (r.len() - i).is_multiple_of(3) && c.is_ascii_digit() {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A limit, or «unlimited».
pub(super) fn limit(p: &Page, v: &Option<i64>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => p.t("billing.unlimited").to_string(),
    }
}

fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono_tz::Europe::Moscow)
                .format("%d.%m")
                .to_string()
        })
        .unwrap_or_default()
}

async fn billing_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Read).map_err(AppError::from)?;
    let o = billing::overview(&st.core, actor.company_id.uuid()).await?;
    let plans = billing::plans(&st.core.db).await?;
    let p = Page::new(&ctx, "billing");
    let (start, end) = (o.standing.sub.period_start, o.standing.sub.period_end);
    let elapsed = usize::try_from((o.now.clamp(start, end) - start) / 86_400_000 + 1).unwrap_or(1);
    let chart = super::chart::usage(
        &o.counted.daily,
        elapsed,
        o.forecast,
        o.standing.limit,
        &day(start),
        &day(end - 1),
        p.t("billing.cumulative"),
    );
    Ok(render(BillingTpl { p, o, plans, chart }))
}
