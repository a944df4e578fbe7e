//! Labels on the open conversation (the header's buttons) and actions on a selection of the
//! list (the bulk bar: assign, add or remove a label, close), with what was done and skipped
//! shown above the list after the redirect.

use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::i18n::Tr;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::inbox::{self, BulkAction};
use chatter_core::CoreError;
use chatter_domain::{ConversationId, Permission, UserId};
use uuid::Uuid;

#[derive(serde::Deserialize)]
pub(super) struct LabelForm {
    label: String,
    /// "1" puts it on, anything else takes it off.
    on: String,
}

pub(super) async fn label(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    CsrfForm(f): CsrfForm<LabelForm>,
) -> Result<Response, AppError> {
    let label: Uuid = f
        .label
        .trim()
        .parse()
        .map_err(|_| CoreError::field("label", "err.label_unknown"))?;
    inbox::toggle_label(&st.core, &ctx.actor()?, id, label, f.on == "1").await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

/// The bulk form: repeated `ids`, the pressed button's `action`, its inputs, and the list's
/// filters to return to.
pub(super) async fn bulk(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Reply)?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let ids: Vec<ConversationId> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect();
    let action_name = get("action");
    let action = match action_name.as_str() {
        "close" => BulkAction::Close,
        "assign" => match get("assignee").as_str() {
            "" => BulkAction::Assign(None),
            s => BulkAction::Assign(Some(UserId(
                s.parse()
                    .map_err(|_| CoreError::field("assignee", "err.assignee_invalid"))?,
            ))),
        },
        "add_label" | "remove_label" => {
            let l: Uuid = get("label")
                .parse()
                .map_err(|_| CoreError::field("label", "err.label_unknown"))?;
            if action_name == "add_label" {
                BulkAction::AddLabel(l)
            } else {
                BulkAction::RemoveLabel(l)
            }
        }
        _ => return Err(CoreError::field("action", "err.bulk_action").into()),
    };
    let mut back: Vec<(&str, String)> = Vec::new();
    for (k, from) in [
        ("status", "status"),
        ("only", "only"),
        ("source", "source"),
        ("label", "label_filter"),
    ] {
        let v = get(from);
        if !v.is_empty() {
            back.push((k, v));
        }
    }
    let (done, not_yours, missing) = if ids.is_empty() {
        // Nothing ticked: back to the list, which says so.
        (0, 0, 0)
    } else {
        let o = inbox::bulk(&st.core, &actor, &ids, &action).await?;
        (o.done, o.not_yours, o.missing)
    };
    back.push(("bulk", action_name));
    back.push(("done", done.to_string()));
    back.push(("not_yours", not_yours.to_string()));
    back.push(("missing", missing.to_string()));
    let q = serde_urlencoded::to_string(&back).unwrap_or_default();
    Ok(Redirect::to(&format!("/app/inbox?{q}")).into_response())
}

/// What the last bulk action did, from the redirect's query.
#[derive(Default, serde::Deserialize)]
pub(super) struct Done {
    bulk: Option<String>,
    #[serde(default)]
    done: usize,
    #[serde(default)]
    not_yours: usize,
    #[serde(default)]
    missing: usize,
}

impl Done {
    /// «3 closed, 1 skipped — not yours» in the reader's language.
    pub(super) fn text(&self, tr: Tr) -> Option<String> {
        let key = match self.bulk.as_deref()? {
            "close" => "bulk.done_close",
            "assign" => "bulk.done_assign",
            "add_label" => "bulk.done_add_label",
            "remove_label" => "bulk.done_remove_label",
            _ => return None,
        };
        if self.done + self.not_yours + self.missing == 0 {
            return Some(tr.t("bulk.nothing_picked").to_owned());
        }
        let n = |k: &str, n: usize| tr.t(k).replace("{n}", &n.to_string());
        let mut parts = vec![n(key, self.done)];
        if self.not_yours > 0 {
            parts.push(n("bulk.skipped_not_yours", self.not_yours));
        }
        if self.missing > 0 {
            parts.push(n("bulk.skipped_missing", self.missing));
        }
        Some(parts.join(", "))
    }
}
