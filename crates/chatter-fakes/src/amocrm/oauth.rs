//! OAuth 2.0 as amoCRM runs it (§1): the consent page, single-use 20-minute codes, 24-hour
//! JWT-shaped access tokens bound to one account, and single-use refresh tokens that rotate.

use super::{
    is_method, parse_body, problem, status_code, AmoState, Grant, Shared, ACCESS_TTL, CODE_TTL,
    REFRESH_TTL,
};
use crate::server::{escape_html, random_hex};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;

/// Issues a code for the account's admin and builds the redirect to the integration (§1.2).
/// `user`: who approves (`None`: the account's admin).
pub(super) fn approve(
    st: &mut AmoState,
    account: i64,
    user: Option<i64>,
    client_id: &str,
    state: &str,
) -> Option<String> {
    let redirect_uri = st.integrations.get(client_id)?.redirect_uri.clone();
    let acc = st.accounts.get(&account)?;
    let user_id = match user {
        Some(u) => acc.user(u)?["id"].as_i64()?,
        None => acc.admin_id(),
    };
    let subdomain = acc.subdomain.clone();
    let code = format!("def50200{}", random_hex(192));
    let expires_at = st.now() + CODE_TTL;
    st.codes.insert(
        code.clone(),
        Grant {
            account,
            client_id: client_id.to_owned(),
            user_id,
            expires_at,
        },
    );
    let mut url = url::Url::parse(&redirect_uri).ok()?;
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state)
        .append_pair("referer", &format!("{subdomain}.amocrm.ru"))
        .append_pair("platform", "1")
        .append_pair("client_id", client_id);
    Some(url.to_string())
}

/// The "integration disabled" hook's signature (§1.7):
/// `hex(HMAC-SHA256(client_secret, "{client_uuid}|{account_id}"))`.
pub(super) fn disabled_hook_signature(secret: &str, client_id: &str, account: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{client_id}|{account}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Resolves `Authorization: Bearer …` to its grant; `None` when missing, unknown, revoked or expired.
pub(super) fn authenticate(st: &AmoState, headers: &HeaderMap) -> Option<Grant> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    let grant = st.access_tokens.get(token)?;
    (grant.expires_at > st.now()).then(|| grant.clone())
}

#[derive(Deserialize)]
pub(super) struct ConsentQuery {
    client_id: Option<String>,
    state: Option<String>,
    mode: Option<String>,
}

/// `GET /oauth?client_id=…&state=…&mode=…`: pick an account, then allow or deny.
pub(super) async fn consent_page(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ConsentQuery>,
) -> Response {
    let st = shared.lock();
    let client_id = q.client_id.unwrap_or_default();
    if !st.integrations.contains_key(&client_id) {
        return (
            StatusCode::BAD_REQUEST,
            Html("<!doctype html><title>amoCRM</title><p>Интеграция не найдена</p>".to_owned()),
        )
            .into_response();
    }
    let mut options = String::new();
    for acc in st.accounts.values() {
        let _ = write!(
            options,
            "<option value=\"{}\">{} ({}.amocrm.ru)</option>",
            acc.id,
            escape_html(&acc.name),
            escape_html(&acc.subdomain)
        );
    }
    let page = format!(
        "<!doctype html><html lang=\"ru\"><meta charset=\"utf-8\"><title>Предоставить доступ — amoCRM</title>\
         <h1>Интеграция запрашивает доступ к аккаунту</h1>\
         <form method=\"post\" action=\"/oauth\">\
         <input type=\"hidden\" name=\"client_id\" value=\"{client}\">\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\
         <input type=\"hidden\" name=\"mode\" value=\"{mode}\">\
         <label>Аккаунт <select name=\"account\" id=\"account\">{options}</select></label>\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Разрешить</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Отказать</button></form></html>",
        client = escape_html(&client_id),
        state = escape_html(&q.state.unwrap_or_default()),
        mode = escape_html(&q.mode.unwrap_or_default()),
    );
    Html(page).into_response()
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    client_id: String,
    #[serde(default)]
    state: String,
    account: Option<i64>,
    decision: String,
}

/// `POST /oauth`: «Разрешить» redirects with a code; «Отказать» with `error=access_denied`.
pub(super) async fn consent_submit(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<ConsentForm>,
) -> Response {
    let mut st = shared.lock();
    let Some(redirect_uri) = st
        .integrations
        .get(&form.client_id)
        .map(|i| i.redirect_uri.clone())
    else {
        return (StatusCode::BAD_REQUEST, "unknown integration").into_response();
    };
    if form.decision != "allow" {
        let Ok(mut url) = url::Url::parse(&redirect_uri) else {
            return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response();
        };
        url.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &form.state);
        return Redirect::to(url.as_str()).into_response();
    }
    match form
        .account
        .and_then(|account| approve(&mut st, account, None, &form.client_id, &form.state))
    {
        Some(url) => Redirect::to(&url).into_response(),
        None => (StatusCode::BAD_REQUEST, "unknown account").into_response(),
    }
}

/// `/oauth2/…`: the token endpoint and the account-domain lookup (§1.3, §1.6).
pub(super) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut st = shared.lock();
    if let Some(status) = st.take_failure(path) {
        return problem(status_code(status), "Injected failure");
    }
    match path {
        "/oauth2/access_token" if is_method(method, "POST") => {
            token(&mut st, &shared.base_url, headers, body)
        }
        "/oauth2/account/current/subdomain" if is_method(method, "GET") => {
            let grant = headers
                .get("x-refresh-token")
                .and_then(|v| v.to_str().ok())
                .and_then(|rt| st.refresh_tokens.get(rt.trim()).cloned());
            let Some(acc) = grant.and_then(|g| st.accounts.get(&g.account)) else {
                return problem(StatusCode::UNAUTHORIZED, "Unauthorized");
            };
            Json200(json!({"id": acc.id, "subdomain": acc.subdomain,
                           "domain": format!("{}.amocrm.ru", acc.subdomain), "top_level_domain": "ru"}))
            .into_response()
        }
        _ => problem(StatusCode::NOT_FOUND, "Route not found"),
    }
}

struct Json200(Value);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// The token endpoint's error (§1.3: 400; body shape unconfirmed, so `hint` + problem fields).
fn token_error(hint: &str, detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"hint": hint, "title": "Некорректный запрос", "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
               "status": 400, "detail": detail})
        .to_string(),
    )
        .into_response()
}

fn token(st: &mut AmoState, base_url: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(req) = parse_body(headers, body) else {
        return token_error("Request body is not JSON", "Request validation failed");
    };
    let field = |name: &str| {
        req.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let client_id = field("client_id");
    let Some(integration) = st.integrations.get(&client_id) else {
        return token_error(
            "Client authentication failed",
            "Client authentication failed",
        );
    };
    // Constant-time comparison is not needed in a fake; the secret never appears in a response.
    if integration.secret != field("client_secret") {
        return token_error(
            "Client authentication failed",
            "Client authentication failed",
        );
    }
    if integration.redirect_uri != field("redirect_uri") {
        return token_error("Redirect URI mismatch", "Request validation failed");
    }
    let now = st.now();
    let grant = match field("grant_type").as_str() {
        "authorization_code" => {
            // One use: the code is gone whether or not it was still valid.
            match st.codes.remove(&field("code")) {
                Some(g) if g.client_id == client_id && g.expires_at > now => g,
                Some(_) => {
                    return token_error(
                        "Authorization code has expired",
                        "Authorization code has expired",
                    )
                }
                None => {
                    return token_error(
                        "Authorization code has been revoked",
                        "Authorization code has been revoked",
                    )
                }
            }
        }
        "refresh_token" => {
            // Single use (§1.4): the old refresh token dies with this call. The old access token
            // keeps working until its own expiry (the spec says nothing of revoking it).
            match st.refresh_tokens.remove(&field("refresh_token")) {
                Some(g) if g.client_id == client_id && g.expires_at > now => g,
                Some(_) => return token_error("Token has expired", "Token has expired"),
                None => return token_error("Token has been revoked", "Token has been revoked"),
            }
        }
        _ => return token_error("Unsupported grant type", "Request validation failed"),
    };
    let api_domain = base_url.trim_start_matches("http://").to_owned();
    let access = jwt(&grant, now, &api_domain);
    let refresh = format!("def50200{}", random_hex(320));
    st.access_tokens.insert(
        access.clone(),
        Grant {
            expires_at: now + ACCESS_TTL,
            ..grant.clone()
        },
    );
    st.refresh_tokens.insert(
        refresh.clone(),
        Grant {
            expires_at: now + REFRESH_TTL,
            ..grant
        },
    );
    Json200(
        json!({"token_type": "Bearer", "expires_in": ACCESS_TTL, "server_time": now,
                   "access_token": access, "refresh_token": refresh}),
    )
    .into_response()
}

/// A JWT with the claims of §1.5. amoCRM signs with RS256 that clients cannot verify; the fake's
/// signature part is random bytes.
fn jwt(grant: &Grant, now: i64, api_domain: &str) -> String {
    let jti = uuid::Uuid::new_v4().to_string();
    let header = json!({"typ": "JWT", "alg": "RS256", "jti": jti});
    let claims = json!({
        "aud": grant.client_id, "jti": jti, "iat": now, "nbf": now, "exp": now + ACCESS_TTL,
        "sub": grant.user_id.to_string(), "grant_type": "", "account_id": grant.account,
        "base_domain": "amocrm.ru", "version": 2, "scopes": ["crm", "files", "files_delete", "notifications", "push_notifications"],
        "hash_uuid": uuid::Uuid::new_v4().to_string(), "api_domain": api_domain,
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(random_hex(256)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn disabled_hook_signature_matches_the_spec_vector() {
        // §1.7's own test vector.
        assert_eq!(
            super::disabled_hook_signature(
                "client-secret",
                "0b0832f6-d123-4123-9123-e73f236833c0",
                12345678
            ),
            "87ea6a59e475d7a45d24bbe17566da706baa3d6919d7bdf5d4d9d5edc4ed4d38"
        );
    }
}
