//! Notifications: the list page (and the bell's panel, the same items without the layout),
//! "mark all read", and the bell's sound, a short tone made here (no third-party asset).

use super::{render, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::i18n::Tr;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::notifications::{self, Item};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/notifications", get(list_page))
        .route("/app/notifications/read", post(read_all))
}

/// One notification as a link to its conversation.
#[derive(Template)]
#[template(path = "notifications/_item.html")]
pub struct ItemTpl {
    pub n: Item,
    pub lang: Tr,
}

impl ItemTpl {
    /// What happened, in the reader's language.
    pub fn what(&self) -> String {
        let t = |k| self.lang.t(k);
        let who = self.n.actor_name.clone().unwrap_or_default();
        match self.n.kind.as_str() {
            notifications::MENTION => format!("{who} {}", t("notify.mention")),
            notifications::ASSIGNED => format!("{who} {}", t("notify.assigned")),
            notifications::AUTO_REPLY => format!("«{who}» {}", t("notify.auto_reply")),
            _ => t("notify.new_conversation").to_owned(),
        }
    }

    pub fn time(&self) -> String {
        super::inbox::fmt_time(self.n.created_at)
    }
}

/// A notification's HTML (the list, the panel and the live stream share it).
pub fn item_html(n: Item, lang: Tr) -> String {
    ItemTpl { n, lang }.render().unwrap_or_default()
}

#[derive(Template)]
#[template(path = "notifications/list.html")]
struct ListTpl {
    p: Page,
    items: Vec<String>,
    unread: u64,
}

#[derive(Template)]
#[template(path = "notifications/_panel.html")]
struct PanelTpl {
    p: Page,
    items: Vec<String>,
    unread: u64,
}

#[derive(serde::Deserialize)]
struct ListQuery {
    /// `1`: only the bell's panel (no layout), for the page's script.
    panel: Option<String>,
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let me = notifications::person(&st.core, &actor, None).await?;
    let panel = q.panel.as_deref() == Some("1");
    let limit = if panel { 10 } else { 100 };
    let tr = Tr(ctx.lang);
    let items: Vec<String> = notifications::list(&st.core, &actor, me, None, limit)
        .await?
        .into_iter()
        .map(|n| item_html(n, tr))
        .collect();
    let unread = notifications::unread_count(&st.core.db, actor.company_id, me).await?;
    let p = Page::new(&ctx, "notifications");
    Ok(if panel {
        render(PanelTpl { p, items, unread })
    } else {
        render(ListTpl { p, items, unread })
    })
}

#[derive(serde::Deserialize)]
struct ReadForm {
    back: Option<String>,
}

async fn read_all(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<ReadForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let me = notifications::person(&st.core, &actor, None).await?;
    notifications::mark_read(&st.core, &actor, me, None).await?;
    let back = f
        .back
        .as_deref()
        .and_then(crate::security::local_path)
        .unwrap_or("/app/notifications")
        .to_owned();
    Ok(Redirect::to(&back).into_response())
}

/// The bell's sound: a short two-tone chime, 16-bit mono PCM WAV made from a formula.
pub(super) async fn sound() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "audio/wav"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        chime_wav(),
    )
}

fn chime_wav() -> Vec<u8> {
    const RATE: u32 = 16_000;
    let tones = [(880.0_f32, 0.12_f32), (1318.5, 0.18)];
    let mut samples: Vec<i16> = Vec::new();
    for (freq, secs) in tones {
        let n = (RATE as f32 * secs) as usize;
        for i in 0..n {
            let t = i as f32 / RATE as f32;
            // A quick fade in and out, so the tone does not click.
            let edge = (i.min(n - i) as f32 / (RATE as f32 * 0.01)).min(1.0);
            let v = (2.0 * std::f32::consts::PI * freq * t).sin() * 0.35 * edge;
            samples.push((v * f32::from(i16::MAX)) as i16);
        }
    }
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&RATE.to_le_bytes());
    w.extend_from_slice(&(RATE * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chime_is_a_wav_file_of_its_stated_length() {
        let w = super::chime_wav();
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..16], b"WAVEfmt ");
        let riff = u32::from_le_bytes([w[4], w[5], w[6], w[7]]) as usize;
        assert_eq!(riff + 8, w.len());
        assert!(w.len() > 8_000, "about a third of a second of sound");
    }
}
