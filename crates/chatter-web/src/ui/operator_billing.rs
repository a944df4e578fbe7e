//! The operator area's billing: every company with its plan, state, period and use, where the
//! operator sets the plan, extends the trial, adds packs or allows overage (until payments
//! exist); and the plans' limits and prices, editable. Each change is in the audit log.

use super::operator::operator;
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::billing::change::{self, By, Change, PlanTerms};
use chatter_core::billing::{self, gate::Standing};
use chatter_core::CoreError;
use chatter_store::entity::{company, plan};
use uuid::Uuid;

/// What the operator page shows of billing.
pub struct BillingView {
    pub companies: Vec<(company::Model, Standing)>,
    pub plans: Vec<plan::Model>,
}

impl BillingView {
    /// The plan's name, or «—» during the trial (the state says so).
    pub fn plan_name(&self, s: &Standing) -> String {
        s.plan
            .as_ref()
            .map_or_else(|| "—".to_string(), |p| p.name.clone())
    }

    /// A limit as the form shows it: empty for unlimited.
    pub fn field(&self, v: &Option<i64>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }

    /// Kopecks as whole roubles for the form.
    pub fn roubles(&self, v: &i64) -> i64 {
        v / 100
    }
}

pub async fn view(st: &AppState) -> Result<BillingView, AppError> {
    Ok(BillingView {
        companies: billing::companies(&st.core).await?,
        plans: billing::plans(&st.core.db).await?,
    })
}

fn by(op: &chatter_core::accounts::operators::Operator) -> By {
    By {
        user_id: op.user_id,
        email: op.email.clone(),
        meta: op.meta.clone(),
    }
}

/// A whole number from a form field; empty is `None`.
fn number(field: &'static str, v: &str) -> Result<Option<i64>, CoreError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<i64>()
        .map(Some)
        .map_err(|_| CoreError::field(field, "err.billing_number"))
}

#[derive(serde::Deserialize)]
pub struct CompanyForm {
    /// `plan`, `trial`, `packs`, `overage_on` or `overage_off`.
    action: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    packs: String,
}

pub async fn change_company(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(f): CsrfForm<CompanyForm>,
) -> Result<Response, AppError> {
    let op = operator(&st, &ctx).await?;
    let c = match f.action.as_str() {
        "plan" => Change::SetPlan(f.plan),
        "trial" => Change::ExtendTrial(
            number("days", &f.days)?.ok_or(CoreError::field("days", "err.billing_days"))?,
        ),
        "packs" => Change::AddPacks(
            number("packs", &f.packs)?.ok_or(CoreError::field("packs", "err.billing_packs"))?,
        ),
        "overage_on" => Change::AllowOverage(true),
        "overage_off" => Change::AllowOverage(false),
        _ => return Err(CoreError::field("action", "err.billing_plan").into()),
    };
    change::apply(&st.core, &by(&op), id, c).await?;
    Ok(Redirect::to(&format!("/app/operator?ok=billing_changed#company-{id}")).into_response())
}

#[derive(serde::Deserialize)]
pub struct PlanForm {
    name: String,
    #[serde(default)]
    messages_per_month: String,
    #[serde(default)]
    users: String,
    #[serde(default)]
    sources: String,
    price_month: String,
    price_year: String,
    pack_messages: String,
    pack_price: String,
}

pub async fn save_plan(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(f): CsrfForm<PlanForm>,
) -> Result<Response, AppError> {
    let op = operator(&st, &ctx).await?;
    let money = |field: &'static str, v: &str| -> Result<i64, CoreError> {
        Ok(number(field, v)?
            .ok_or(CoreError::field(field, "err.billing_number"))?
            .saturating_mul(100))
    };
    let terms = PlanTerms {
        name: f.name,
        messages_per_month: number("messages_per_month", &f.messages_per_month)?,
        users: number("users", &f.users)?,
        sources: number("sources", &f.sources)?,
        price_month: money("price_month", &f.price_month)?,
        price_year: money("price_year", &f.price_year)?,
        pack_messages: number("pack_messages", &f.pack_messages)?
            .ok_or(CoreError::field("pack_messages", "err.billing_number"))?,
        pack_price: money("pack_price", &f.pack_price)?,
    };
    change::update_plan(&st.core, &by(&op), id, terms).await?;
    Ok(Redirect::to(&format!("/app/operator?ok=plan_saved#plan-{id}")).into_response())
}
