//! An OpenAI-compatible chat-completions server (`POST /v1/chat/completions`) for the lead
//! filter's LLM backend, deterministic so tests can assert on its verdicts: the last user
//! message is a lead when it asks for a service («нужен», «ищу», «кто сделает», «посоветуйте»)
//! and has no seller's words («звоните», «скидка», «предлагаем»).
//!
//! Like the servers it stands for: a request without `Authorization` gets 401; with
//! `response_format` it answers plain JSON content, without it a fenced ```json block (what a
//! model only told to answer JSON tends to write). Faults are queued per request: any status,
//! 429 with `Retry-After`, a hang, nonsense content; and a switch makes it refuse `json_schema`
//! with 400, as some llama.cpp builds do (and another `json_object`).

use crate::server::PageServer;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the next request gets instead of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmFault {
    /// This status with an error body.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RateLimited { retry_after_secs: u64 },
    /// No answer until the fake stops (or 60 s): the client's timeout must fire.
    Hang,
    /// 200 with content that is not a verdict.
    Nonsense,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct LlmCall {
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl LlmCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<LlmFault>,
    refuse_json_schema: bool,
    refuse_json_object: bool,
    calls: Vec<LlmCall>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running fake. Dropping it stops the server.
pub struct FakeLlm {
    server: PageServer,
    state: Shared,
}

impl FakeLlm {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<FakeLlm> {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&state));
        let server = PageServer::start(app, "the fake LLM server stopped").await?;
        Ok(FakeLlm { server, state })
    }

    /// The base URL a client is configured with (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.base_url)
    }

    /// The next request (after any already queued) gets this fault.
    pub fn fail_next(&self, fault: LlmFault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Answer 400 to `response_format: json_schema` (json_object still works).
    pub fn refuse_json_schema(&self, refuse: bool) {
        lock(&self.state).refuse_json_schema = refuse;
    }

    /// Answer 400 to `response_format: json_object` too: only a prompt-only request works.
    pub fn refuse_json_object(&self, refuse: bool) {
        lock(&self.state).refuse_json_object = refuse;
    }

    /// Every request so far, oldest first.
    pub fn calls(&self) -> Vec<LlmCall> {
        lock(&self.state).calls.clone()
    }
}

/// The fake's verdict on a text: (lead, score, reason).
pub fn fake_verdict(text: &str) -> (bool, f64, String) {
    let t = text.to_lowercase().replace('ё', "е");
    let asks = [
        "нужен",
        "нужна",
        "ищу",
        "ищем",
        "кто сделает",
        "посоветуйте",
    ]
    .iter()
    .find(|w| t.contains(*w));
    let sells = ["звоните", "скидк", "предлагаем"]
        .iter()
        .find(|w| t.contains(*w));
    match (asks, sells) {
        (Some(a), None) => (true, 0.92, format!("просит услугу: «{a}»")),
        (_, Some(s)) => (false, 0.05, format!("реклама: «{s}»")),
        (None, None) => (false, 0.2, "не просьба об услуге".into()),
    }
}

async fn complete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let call = LlmCall {
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.clone(),
    };
    let (fault, refuse_schema, refuse_object) = {
        let mut inner = lock(&s);
        inner.calls.push(call);
        (
            inner.faults.pop_front(),
            inner.refuse_json_schema,
            inner.refuse_json_object,
        )
    };
    if !headers.contains_key("authorization") {
        return error(StatusCode::UNAUTHORIZED, "no Authorization header");
    }
    match fault {
        Some(LlmFault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "injected failure");
        }
        Some(LlmFault::RateLimited { retry_after_secs }) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limit reached");
            if let Ok(v) = retry_after_secs.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
        }
        Some(LlmFault::Hang) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "hung");
        }
        Some(LlmFault::Nonsense) => return answer("Я думаю, это интересное сообщение."),
        None => {}
    }
    let format = body
        .pointer("/response_format/type")
        .and_then(Value::as_str);
    if format == Some("json_object") && refuse_object {
        return error(
            StatusCode::BAD_REQUEST,
            "'response_format' of type json_object is not supported",
        );
    }
    if format == Some("json_schema") && refuse_schema {
        return error(
            StatusCode::BAD_REQUEST,
            "'response_format' of type json_schema is not supported: use json_schema or grammar, not both",
        );
    }
    let text = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let (lead, score, reason) = fake_verdict(text);
    let category = if lead { "request" } else { "offer_ad" };
    let verdict = json!({"relevant": lead, "score": score, "reason": reason, "category": category})
        .to_string();
    if format.is_some() {
        answer(&verdict)
    } else {
        answer(&format!("Вот ответ:\n```json\n{verdict}\n```"))
    }
}

fn answer(content: &str) -> Response {
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}
    }))
    .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}
