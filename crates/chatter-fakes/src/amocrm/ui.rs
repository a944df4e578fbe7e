//! A small page per account for `chatter demo` and browser tests: the account's deals and its
//! chats, with a form to answer as the manager (which sends the signed amojo webhook).

use super::{amojo, Account, Kind, Shared};
use crate::server::escape_html;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

const STYLE: &str = "body{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}\
.chat{border:1px solid #ccc;border-radius:.4rem;padding:.5rem;margin:.8rem 0}.in{color:#333}.out{color:#0a5}";

/// `GET /ui`: every account.
pub(super) async fn index(State(shared): State<Arc<Shared>>) -> Html<String> {
    let st = shared.lock();
    let mut list = String::new();
    for acc in st.accounts.values() {
        let _ = write!(
            list,
            "<li><a href=\"/ui/{sub}\">{name}</a> ({sub}.amocrm.ru)</li>",
            sub = escape_html(&acc.subdomain),
            name = escape_html(&acc.name)
        );
    }
    Html(format!(
        "<!doctype html><html lang=\"ru\"><meta charset=\"utf-8\"><title>amoCRM (fake)</title>\
         <style>{STYLE}</style><h1>Аккаунты amoCRM</h1><ul>{list}</ul></html>"
    ))
}

fn status_name(acc: &Account, pipeline: i64, status: i64) -> (String, String) {
    let Some(p) = acc.pipeline(pipeline) else {
        return ("—".into(), "—".into());
    };
    let status = p["_embedded"]["statuses"]
        .as_array()
        .and_then(|ss| ss.iter().find(|s| s["id"].as_i64() == Some(status)))
        .and_then(|s| s["name"].as_str())
        .unwrap_or("—");
    (
        p["name"].as_str().unwrap_or("—").to_owned(),
        status.to_owned(),
    )
}

fn text(v: &Value) -> String {
    escape_html(v.as_str().unwrap_or(""))
}

/// `GET /ui/{subdomain}`: deals, then chats with their messages and a reply form.
pub(super) async fn account_page(
    State(shared): State<Arc<Shared>>,
    Path(subdomain): Path<String>,
) -> Response {
    let st = shared.lock();
    let Some(acc) = st.accounts.values().find(|a| a.subdomain == subdomain) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>Аккаунт не найден</p>".to_owned()),
        )
            .into_response();
    };
    let mut leads = String::new();
    for lead in acc
        .entities
        .get(&Kind::Leads)
        .into_iter()
        .flat_map(|m| m.values().rev())
    {
        let id = lead["id"].as_i64().unwrap_or_default();
        let (pipeline, status) = status_name(
            acc,
            lead["pipeline_id"].as_i64().unwrap_or_default(),
            lead["status_id"].as_i64().unwrap_or_default(),
        );
        let contacts: Vec<String> = acc
            .linked((Kind::Leads, id), Kind::Contacts)
            .iter()
            .filter_map(|(c, _)| acc.entity(Kind::Contacts, *c))
            .map(|c| text(&c["name"]))
            .collect();
        let tags: Vec<String> = lead["_embedded"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| text(&t["name"]))
            .collect();
        let _ = write!(
            leads,
            "<tr data-lead=\"{id}\"><td>{id}</td><td>{name}</td><td>{pipeline}</td><td>{status}</td>\
             <td>{responsible}</td><td>{contacts}</td><td>{tags}</td></tr>",
            name = text(&lead["name"]),
            pipeline = escape_html(&pipeline),
            status = escape_html(&status),
            responsible = escape_html(&acc.user_name(lead["responsible_user_id"].as_i64().unwrap_or_default())),
            contacts = contacts.join(", "),
            tags = tags.join(", "),
        );
    }
    let mut chats = String::new();
    for chat in &acc.chats {
        let _ = write!(
            chats,
            "<section class=\"chat\" data-chat=\"{id}\"><h3>{name}</h3>",
            id = escape_html(&chat.id),
            name = text(&chat.user["name"]),
        );
        for m in &chat.messages {
            let class = if m["direction"] == "incoming" {
                "in"
            } else {
                "out"
            };
            let who = if class == "in" {
                text(&chat.user["name"])
            } else {
                text(&m["sender"]["name"])
            };
            let status = match m["delivery_status"].as_i64() {
                Some(1) => " ✓",
                Some(2) => " ✓✓",
                Some(-1) => " ⚠",
                _ => "",
            };
            let _ = write!(
                chats,
                "<p class=\"{class}\"><b>{who}:</b> {body}{status}</p>",
                body = text(&m["message"]["text"]),
            );
        }
        let _ = write!(
            chats,
            "<form method=\"post\" action=\"/ui/{sub}/chats/{id}/reply\">\
             <input name=\"text\" required placeholder=\"Ответ менеджера\" aria-label=\"Ответ менеджера\">\
             <button type=\"submit\">Отправить</button></form></section>",
            sub = escape_html(&acc.subdomain),
            id = escape_html(&chat.id),
        );
    }
    Html(format!(
        "<!doctype html><html lang=\"ru\"><meta charset=\"utf-8\"><title>{name} — amoCRM (fake)</title>\
         <style>{STYLE}</style><h1>{name}</h1><h2>Сделки</h2>\
         <table id=\"leads\"><tr><th>№</th><th>Название</th><th>Воронка</th><th>Этап</th>\
         <th>Ответственный</th><th>Контакт</th><th>Теги</th></tr>{leads}</table>\
         <h2>Чаты</h2>{chats}</html>",
        name = escape_html(&acc.name),
    ))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct ReplyForm {
    text: String,
}

/// `POST /ui/{subdomain}/chats/{chat_id}/reply`: answers as the manager, then back to the page.
pub(super) async fn reply(
    State(shared): State<Arc<Shared>>,
    Path((subdomain, chat_id)): Path<(String, String)>,
    Form(form): Form<ReplyForm>,
) -> Response {
    let account = {
        let st = shared.lock();
        st.accounts
            .values()
            .find(|a| a.subdomain == subdomain)
            .map(|a| a.id)
    };
    let Some(account) = account else {
        return (StatusCode::NOT_FOUND, "account not found").into_response();
    };
    if form.text.trim().is_empty() {
        return Redirect::to(&format!("/ui/{subdomain}")).into_response();
    }
    if let Err(error) = amojo::manager_replies(&shared, account, &chat_id, form.text.trim()).await {
        tracing::warn!(%error, "fake amoCRM: manager reply not delivered");
    }
    Redirect::to(&format!("/ui/{subdomain}")).into_response()
}
