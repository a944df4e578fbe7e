//! REST API v4 of one account (§2–§3): auth, the per-account limiter, injected failures, then the
//! endpoints the integration uses, over real state — HAL envelopes, `request_id` echo, 204 on
//! empty, problem+json with `validation-errors`.

use super::{
    hal, is_closed_status, is_method, no_content, oauth, problem, problem_with, status_code,
    Account, AmoState, Kind, Shared, STATUS_LOST, STATUS_WON,
};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Leads per `POST /api/v4/leads/complex` (§3.5); also the fake's cap for plain batches (§7.7).
const MAX_BATCH: usize = 50;
const MAX_LIMIT: usize = 250;

type Params = Vec<(String, String)>;
/// An entity to store and the entities it links to: (kind, id, is_main).
type Built = (Value, Vec<(Kind, i64, bool)>);

/// Everything a handler needs besides the account.
struct Ctx<'a> {
    base: &'a str,
    user_id: i64,
    now: i64,
    params: Params,
}

impl Ctx<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn with(&self, what: &str) -> bool {
        self.param("with")
            .is_some_and(|w| w.split(',').any(|p| p.trim() == what))
    }

    /// Values of `key`, `key[]` and `key[N]`.
    fn values(&self, key: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| {
                k == key
                    || k.strip_prefix(key).is_some_and(|rest| {
                        rest.starts_with('[')
                            && rest.ends_with(']')
                            && rest[1..rest.len() - 1].chars().all(|c| c.is_ascii_digit())
                    })
            })
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn ids(&self, key: &str) -> Vec<i64> {
        self.values(key)
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect()
    }
}

/// Returns the response and the account whose token made the call.
pub(super) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    at: Instant,
) -> (Response, Option<i64>) {
    let mut st = shared.lock();
    let Some(grant) = oauth::authenticate(&st, headers) else {
        return (problem(StatusCode::UNAUTHORIZED, "Unauthorized"), None);
    };
    let limit = st.rate_limit as usize;
    let Some(mut acc) = st.accounts.remove(&grant.account) else {
        return (problem(StatusCode::UNAUTHORIZED, "Unauthorized"), None);
    };
    while acc
        .window
        .front()
        .is_some_and(|t| at.duration_since(*t) >= Duration::from_secs(1))
    {
        acc.window.pop_front();
    }
    let response = if acc.window.len() >= limit {
        acc.throttled += 1;
        problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests")
    } else {
        acc.window.push_back(at);
        match st.take_failure(path) {
            Some(status) => injected(status),
            None => {
                let ctx = Ctx {
                    base: &shared.base_url,
                    user_id: grant.user_id,
                    now: st.now(),
                    params: url::form_urlencoded::parse(query.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect(),
                };
                let done = route(&mut st, &mut acc, &ctx, method, path, body);
                match st.take_lost_answer(path) {
                    Some(status) if done.status().is_success() => injected(status),
                    _ => done,
                }
            }
        }
    };
    st.accounts.insert(acc.id, acc);
    (response, Some(grant.account))
}

/// An injected failure with the body amoCRM gives for that status; a 403 is nginx's HTML page,
/// as when an account or IP is blocked (§2.1).
fn injected(status: u16) -> Response {
    if status == 403 {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center><hr><center>nginx</center></body></html>",
        )
            .into_response();
    }
    let code = status_code(status);
    problem(code, code.canonical_reason().unwrap_or("Error"))
}

fn route(
    st: &mut AmoState,
    acc: &mut Account,
    ctx: &Ctx<'_>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Response {
    let segments: Vec<&str> = path
        .trim_start_matches("/api/v4/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    let get = is_method(method, "GET");
    let post = is_method(method, "POST");
    let patch = is_method(method, "PATCH");
    let json_body = || serde_json::from_slice::<Value>(body).ok();
    match segments.as_slice() {
        ["account"] if get => account(acc, ctx),
        ["users"] if get => {
            let users: Vec<Value> = acc.users.iter().map(|u| user_out(u, ctx)).collect();
            hal(
                StatusCode::OK,
                json!({"_total_items": users.len(), "_page": 1, "_page_count": 1,
                       "_links": self_link(ctx, "users"), "_embedded": {"users": users}}),
            )
        }
        ["users", id] if get => match id.parse().ok().and_then(|id| acc.user(id)) {
            Some(u) => hal(StatusCode::OK, user_out(u, ctx)),
            None => problem(StatusCode::NOT_FOUND, "User not found"),
        },
        ["leads", "pipelines"] if get => hal(
            StatusCode::OK,
            json!({"_total_items": acc.pipelines.len(), "_links": self_link(ctx, "leads/pipelines"),
                   "_embedded": {"pipelines": acc.pipelines}}),
        ),
        ["leads", "pipelines", id] if get => {
            match id.parse().ok().and_then(|id| acc.pipeline(id)) {
                Some(p) => hal(StatusCode::OK, p.clone()),
                None => problem(StatusCode::NOT_FOUND, "Pipeline not found"),
            }
        }
        ["leads", "pipelines", id, "statuses"] if get => {
            match id.parse().ok().and_then(|id| acc.pipeline(id)) {
                Some(p) => {
                    let statuses = p["_embedded"]["statuses"].clone();
                    hal(
                        StatusCode::OK,
                        json!({"_total_items": statuses.as_array().map_or(0, Vec::len),
                               "_embedded": {"statuses": statuses}}),
                    )
                }
                None => problem(StatusCode::NOT_FOUND, "Pipeline not found"),
            }
        }
        ["leads", "pipelines", id, "statuses", sid] if get => {
            let status = id
                .parse()
                .ok()
                .and_then(|id| acc.pipeline(id))
                .and_then(|p| {
                    p["_embedded"]["statuses"]
                        .as_array()?
                        .iter()
                        .find(|s| s["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(*sid))
                        .cloned()
                });
            match status {
                Some(s) => hal(StatusCode::OK, s),
                None => problem(StatusCode::NOT_FOUND, "Status not found"),
            }
        }
        [kind, "custom_fields"] if get => match Kind::parse(kind) {
            Some(kind) => {
                let fields = acc.custom_fields.get(&kind).cloned().unwrap_or_default();
                hal(
                    StatusCode::OK,
                    json!({"_total_items": fields.len(), "_page": 1, "_page_count": 1,
                           "_links": self_link(ctx, &format!("{}/custom_fields", kind.as_str())),
                           "_embedded": {"custom_fields": fields}}),
                )
            }
            None => not_found(),
        },
        [kind, "custom_fields", id] if get => {
            let field = Kind::parse(kind).and_then(|k| {
                acc.custom_fields
                    .get(&k)?
                    .iter()
                    .find(|f| f["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(*id))
                    .cloned()
            });
            match field {
                Some(f) => hal(StatusCode::OK, f),
                None => problem(StatusCode::NOT_FOUND, "Custom field not found"),
            }
        }
        [kind, "tags"] if get => match Kind::parse(kind) {
            Some(kind) => {
                let tags = acc.tags.get(&kind).cloned().unwrap_or_default();
                list_or_204(ctx, kind.as_str(), "tags", tags)
            }
            None => not_found(),
        },
        ["leads", "complex"] if post => match json_body() {
            Some(items) => complex(st, acc, ctx, &items),
            None => bad_json(),
        },
        ["contacts", "chats"] if post => match json_body() {
            Some(items) => link_chats(st, acc, &items),
            None => bad_json(),
        },
        ["contacts", "chats"] if get => {
            let contact = ctx.param("contact_id").and_then(|v| v.parse::<i64>().ok());
            let chat = ctx.param("chat_id");
            let chats: Vec<Value> = acc
                .chat_links
                .iter()
                .filter(|l| contact.is_none_or(|c| l["contact_id"].as_i64() == Some(c)))
                .filter(|l| chat.is_none_or(|c| l["chat_id"].as_str() == Some(c)))
                .cloned()
                .collect();
            if chats.is_empty() {
                no_content()
            } else {
                hal(
                    StatusCode::OK,
                    json!({"_total_items": chats.len(), "_embedded": {"chats": chats}}),
                )
            }
        }
        [kind, "links"] if get => match Kind::parse(kind) {
            Some(kind) => {
                let ids = ctx.ids("filter[entity_id]");
                let links: Vec<Value> = ids
                    .iter()
                    .flat_map(|id| links_of(acc, (kind, *id)))
                    .collect();
                list_or_204(ctx, &format!("{}/links", kind.as_str()), "links", links)
            }
            None => not_found(),
        },
        [kind, "notes"] => match Kind::parse(kind) {
            Some(kind) if post => match json_body() {
                Some(items) => add_notes(st, acc, ctx, kind, None, &items),
                None => bad_json(),
            },
            Some(kind) if get => list_notes(acc, ctx, kind, ctx.ids("filter[entity_id]")),
            _ => not_found(),
        },
        [kind, id, "notes"] => match (Kind::parse(kind), id.parse::<i64>().ok()) {
            (Some(kind), Some(id)) if post => match json_body() {
                Some(items) => add_notes(st, acc, ctx, kind, Some(id), &items),
                None => bad_json(),
            },
            (Some(kind), Some(id)) if get => list_notes(acc, ctx, kind, vec![id]),
            _ => not_found(),
        },
        [kind, id, action @ ("link" | "unlink")] if post => {
            match (Kind::parse(kind), id.parse::<i64>().ok(), json_body()) {
                (Some(kind), Some(id), Some(items)) => {
                    link(acc, ctx, kind, id, &items, *action == "link")
                }
                (Some(_), Some(_), None) => bad_json(),
                _ => not_found(),
            }
        }
        [kind, id, "links"] if get => match (Kind::parse(kind), id.parse::<i64>().ok()) {
            (Some(kind), Some(id)) if acc.entity(kind, id).is_some() => {
                let links = links_of(acc, (kind, id));
                list_or_204(
                    ctx,
                    &format!("{}/{id}/links", kind.as_str()),
                    "links",
                    links,
                )
            }
            _ => no_content(),
        },
        ["tasks"] if post => match json_body() {
            Some(items) => add_tasks(st, acc, ctx, &items),
            None => bad_json(),
        },
        ["tasks"] if get => {
            let tasks = acc.tasks.clone();
            list_or_204(ctx, "tasks", "tasks", tasks)
        }
        ["webhooks"] => webhooks(acc, ctx, method, json_body()),
        ["sources"] if get => {
            let sources = acc.sources.clone();
            list_or_204(ctx, "sources", "sources", sources)
        }
        ["sources"] if post => match json_body() {
            Some(items) => add_sources(st, acc, ctx, &items),
            None => bad_json(),
        },
        [kind] => match Kind::parse(kind) {
            Some(kind) if get => list_entities(acc, ctx, kind),
            Some(kind) if post => match json_body() {
                Some(items) => create_entities(st, acc, ctx, kind, &items),
                None => bad_json(),
            },
            Some(kind) if patch => match json_body() {
                Some(items) => patch_entities(st, acc, ctx, kind, &items, None),
                None => bad_json(),
            },
            _ => not_found(),
        },
        [kind, id] => match (Kind::parse(kind), id.parse::<i64>().ok()) {
            (Some(kind), Some(id)) if get => match acc.entity(kind, id) {
                Some(e) => hal(StatusCode::OK, render_with(acc, ctx, kind, e)),
                None => no_content(),
            },
            (Some(kind), Some(id)) if patch => match json_body() {
                Some(item) => patch_entities(st, acc, ctx, kind, &item, Some(id)),
                None => bad_json(),
            },
            _ => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "Route not found")
}

fn bad_json() -> Response {
    problem(StatusCode::BAD_REQUEST, "Request body is not valid JSON")
}

fn self_link(ctx: &Ctx<'_>, path: &str) -> Value {
    json!({"self": {"href": format!("{}/api/v4/{path}", ctx.base)}})
}

fn list_or_204(ctx: &Ctx<'_>, path: &str, key: &str, items: Vec<Value>) -> Response {
    if items.is_empty() {
        return no_content();
    }
    let mut embedded = Map::new();
    embedded.insert(key.to_owned(), Value::Array(items));
    hal(
        StatusCode::OK,
        json!({"_page": 1, "_links": self_link(ctx, path), "_embedded": embedded}),
    )
}

/// One item's validation errors, keyed by its `request_id` (§2.1).
fn validation(errors: Vec<(String, Vec<Value>)>) -> Response {
    let list: Vec<Value> = errors
        .into_iter()
        .map(|(request_id, errors)| json!({"request_id": request_id, "errors": errors}))
        .collect();
    problem_with(
        StatusCode::BAD_REQUEST,
        "Request validation failed",
        Some(Value::Array(list)),
    )
}

fn error(code: &str, path: &str, detail: &str) -> Value {
    json!({"code": code, "path": path, "detail": detail})
}

fn request_id(item: &Value, index: usize) -> String {
    match &item["request_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => index.to_string(),
    }
}

/// A batch body: a JSON array of 1..=50 objects.
fn batch(items: &Value) -> Result<&Vec<Value>, Box<Response>> {
    match items.as_array() {
        Some(list) if list.is_empty() => {
            Err(Box::new(problem(StatusCode::BAD_REQUEST, "Empty request")))
        }
        Some(list) if list.len() > MAX_BATCH => Err(Box::new(validation(vec![(
            "0".to_owned(),
            vec![error(
                "TooManyItems",
                "",
                &format!("No more than {MAX_BATCH} items per request"),
            )],
        )]))),
        Some(list) if list.iter().all(Value::is_object) => Ok(list),
        _ => Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "Request body must be an array of objects",
        ))),
    }
}

fn account(acc: &Account, ctx: &Ctx<'_>) -> Response {
    let mut body = json!({
        "id": acc.id, "name": acc.name, "subdomain": acc.subdomain, "current_user_id": ctx.user_id,
        "country": "RU", "currency": "RUB", "currency_symbol": "₽", "customers_mode": "disabled",
        "is_unsorted_on": true, "mobile_feature_version": 0, "is_loss_reason_enabled": true,
        "is_helpbot_enabled": false, "is_technical_account": false, "contact_name_display_order": 1,
        "_links": self_link(ctx, "account"),
    });
    let mut embedded = Map::new();
    if ctx.with("amojo_id") {
        body["amojo_id"] = json!(acc.amojo_id);
    }
    if ctx.with("version") {
        body["version"] = json!(16);
    }
    if ctx.with("is_api_filter_enabled") {
        body["is_api_filter_enabled"] = json!(false);
    }
    if ctx.with("amojo_rights") {
        body["amojo_rights"] = json!({"can_direct": true, "can_create_groups": true});
    }
    if ctx.with("users_groups") {
        embedded.insert(
            "users_groups".into(),
            json!([{"id": 0, "name": "Отдел продаж"}]),
        );
    }
    if ctx.with("task_types") {
        embedded.insert(
            "task_types".into(),
            json!([{"id": 1, "name": "Связаться", "code": "FOLLOW_UP"}, {"id": 2, "name": "Встреча", "code": "MEETING"}]),
        );
    }
    if ctx.with("datetime_settings") {
        embedded.insert(
            "datetime_settings".into(),
            json!({"timezone": "Europe/Moscow", "timezone_offset": "+03:00", "date_format": "d.m.Y", "time_format": "H:i"}),
        );
    }
    if !embedded.is_empty() {
        body["_embedded"] = Value::Object(embedded);
    }
    hal(StatusCode::OK, body)
}

fn user_out(user: &Value, ctx: &Ctx<'_>) -> Value {
    let mut u = user.clone();
    if let Some(map) = u.as_object_mut() {
        if !ctx.with("amojo_id") {
            map.remove("amojo_id");
        }
        if !ctx.with("uuid") {
            map.remove("uuid");
        }
        map.remove("account_id");
        let id = map.get("id").cloned().unwrap_or(Value::Null);
        map.insert("_links".into(), self_link(ctx, &format!("users/{id}")));
    }
    u
}

// ---------------------------------------------------------------------------------------------
// Entities

/// An entity as the API returns it: stored fields, `_links`, and `_embedded` links computed from
/// the link table (`with_links`: the `with=contacts` / `with=leads` part).
pub(super) fn render(acc: &Account, base: &str, kind: Kind, e: &Value, with_links: bool) -> Value {
    let mut out = e.clone();
    let id = e["id"].as_i64().unwrap_or_default();
    let href =
        |k: Kind, id: i64| json!({"self": {"href": format!("{base}/api/v4/{}/{id}", k.as_str())}});
    out["_links"] = href(kind, id);
    let mut embedded = e["_embedded"].as_object().cloned().unwrap_or_default();
    if kind != Kind::Companies {
        let companies: Vec<Value> = acc
            .linked((kind, id), Kind::Companies)
            .into_iter()
            .map(|(c, _)| json!({"id": c, "_links": href(Kind::Companies, c)}))
            .collect();
        embedded.insert("companies".into(), Value::Array(companies));
    }
    if with_links {
        match kind {
            Kind::Leads => {
                let contacts: Vec<Value> = acc
                    .linked((kind, id), Kind::Contacts)
                    .into_iter()
                    .map(|(c, main)| json!({"id": c, "is_main": main, "_links": href(Kind::Contacts, c)}))
                    .collect();
                embedded.insert("contacts".into(), Value::Array(contacts));
            }
            Kind::Contacts | Kind::Companies => {
                let leads: Vec<Value> = acc
                    .linked((kind, id), Kind::Leads)
                    .into_iter()
                    .map(|(l, _)| json!({"id": l, "_links": href(Kind::Leads, l)}))
                    .collect();
                embedded.insert("leads".into(), Value::Array(leads));
                if kind == Kind::Companies {
                    let contacts: Vec<Value> = acc
                        .linked((kind, id), Kind::Contacts)
                        .into_iter()
                        .map(|(c, _)| json!({"id": c, "_links": href(Kind::Contacts, c)}))
                        .collect();
                    embedded.insert("contacts".into(), Value::Array(contacts));
                }
            }
        }
    }
    out["_embedded"] = Value::Object(embedded);
    out
}

fn render_with(acc: &Account, ctx: &Ctx<'_>, kind: Kind, e: &Value) -> Value {
    let with = match kind {
        Kind::Leads => ctx.with("contacts"),
        Kind::Contacts | Kind::Companies => ctx.with("leads") || ctx.with("contacts"),
    };
    render(acc, ctx.base, kind, e, with)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// `query=`: a substring of the name or any custom field value, case-insensitive; phones also
/// match by digits, so `8 (999) 123-45-67` finds `+79991234567` (the last ten digits agree).
fn matches_query(e: &Value, query: &str) -> bool {
    let q = query.trim().to_lowercase();
    if q.is_empty() {
        return true;
    }
    let qd = digits(&q);
    let text_hit = |s: &str| s.to_lowercase().contains(&q);
    let digit_hit = |s: &str| {
        if qd.len() < 5 {
            return false;
        }
        let d = digits(s);
        d.contains(&qd) || (qd.len() >= 10 && d.ends_with(&qd[qd.len() - 10..]))
    };
    let names = ["name", "first_name", "last_name"];
    if names.iter().any(|k| e[k].as_str().is_some_and(text_hit)) {
        return true;
    }
    e["custom_fields_values"].as_array().is_some_and(|fields| {
        fields.iter().any(|f| {
            f["values"].as_array().is_some_and(|vs| {
                vs.iter().any(|v| match &v["value"] {
                    Value::String(s) => text_hit(s) || digit_hit(s),
                    Value::Number(n) => text_hit(&n.to_string()),
                    _ => false,
                })
            })
        })
    })
}

fn list_entities(acc: &Account, ctx: &Ctx<'_>, kind: Kind) -> Response {
    let ids = ctx.ids("filter[id]");
    let pipelines = ctx.ids("filter[pipeline_id]");
    let responsible = ctx.ids("filter[responsible_user_id]");
    let names = ctx.values("filter[name]");
    // filter[statuses][N][pipeline_id] + filter[statuses][N][status_id] pairs.
    let mut statuses: std::collections::BTreeMap<String, (Option<i64>, Option<i64>)> =
        std::collections::BTreeMap::new();
    for (k, v) in &ctx.params {
        if let Some(rest) = k.strip_prefix("filter[statuses][") {
            if let Some((n, field)) = rest.split_once("][") {
                let entry = statuses.entry(n.to_owned()).or_default();
                match field.trim_end_matches(']') {
                    "pipeline_id" => entry.0 = v.parse().ok(),
                    "status_id" => entry.1 = v.parse().ok(),
                    _ => {}
                }
            }
        }
    }
    let query = ctx.param("query").unwrap_or("");
    let Some(all) = acc.entities.get(&kind) else {
        return no_content();
    };
    // Contacts of a lead still in Unsorted are hidden from lists until it is taken (§3.10).
    let mut found: Vec<&Value> = all
        .values()
        .filter(|e| e["is_unsorted"] != json!(true))
        .filter(|e| ids.is_empty() || e["id"].as_i64().is_some_and(|i| ids.contains(&i)))
        .filter(|e| {
            pipelines.is_empty()
                || e["pipeline_id"]
                    .as_i64()
                    .is_some_and(|p| pipelines.contains(&p))
        })
        .filter(|e| {
            responsible.is_empty()
                || e["responsible_user_id"]
                    .as_i64()
                    .is_some_and(|r| responsible.contains(&r))
        })
        .filter(|e| {
            names.is_empty()
                || e["name"]
                    .as_str()
                    .is_some_and(|n| names.iter().any(|x| x == n))
        })
        .filter(|e| {
            statuses.is_empty()
                || statuses.values().any(|(p, s)| {
                    p.is_none_or(|p| e["pipeline_id"].as_i64() == Some(p))
                        && s.is_none_or(|s| e["status_id"].as_i64() == Some(s))
                })
        })
        .filter(|e| matches_query(e, query))
        .collect();
    let order = ctx.params.iter().find_map(|(k, v)| {
        k.strip_prefix("order[")
            .and_then(|f| f.strip_suffix(']'))
            .map(|f| (f.to_owned(), v.eq_ignore_ascii_case("desc")))
    });
    if let Some((field, desc)) = order {
        found.sort_by_key(|e| e[field.as_str()].as_i64().unwrap_or_default());
        if desc {
            found.reverse();
        }
    }
    let page: usize = ctx
        .param("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let limit: usize = ctx
        .param("limit")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50)
        .clamp(1, MAX_LIMIT);
    let items: Vec<Value> = found
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|e| render_with(acc, ctx, kind, e))
        .collect();
    if items.is_empty() {
        return no_content();
    }
    let path = kind.as_str();
    let page_url =
        |p: usize| json!({"href": format!("{}/api/v4/{path}?page={p}&limit={limit}", ctx.base)});
    let mut links = json!({"self": page_url(page)});
    if found.len() > page * limit {
        links["next"] = page_url(page + 1);
    }
    if page > 1 {
        links["prev"] = page_url(page - 1);
    }
    let mut embedded = Map::new();
    embedded.insert(path.to_owned(), Value::Array(items));
    hal(
        StatusCode::OK,
        json!({"_page": page, "_links": links, "_embedded": embedded}),
    )
}

/// Normalises `custom_fields_values` of a write into what reads return. `Value::Null` entries
/// (`"values": null`) mean "clear this field".
fn custom_fields(
    acc: &Account,
    kind: Kind,
    input: &Value,
    errors: &mut Vec<Value>,
) -> Vec<(i64, Value)> {
    let Some(items) = input.as_array() else {
        if !input.is_null() {
            errors.push(error(
                "InvalidType",
                "custom_fields_values",
                "Must be an array",
            ));
        }
        return Vec::new();
    };
    let fields = acc.custom_fields.get(&kind).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = fields.iter().find(|f| {
            (item["field_id"].is_i64() && f["id"] == item["field_id"])
                || (item["field_code"].is_string() && f["code"] == item["field_code"])
        });
        let Some(field) = field else {
            errors.push(error(
                "NotSupportedChoice",
                &format!("custom_fields_values.{i}.field_id"),
                "The value you selected is not a valid choice.",
            ));
            continue;
        };
        let id = field["id"].as_i64().unwrap_or_default();
        if item["values"].is_null() {
            out.push((id, Value::Null));
            continue;
        }
        let Some(values) = item["values"].as_array() else {
            errors.push(error(
                "InvalidType",
                &format!("custom_fields_values.{i}.values"),
                "Must be an array",
            ));
            continue;
        };
        let enums = field["enums"].as_array().cloned().unwrap_or_default();
        let field_type = field["type"].as_str().unwrap_or("text");
        let mut norm = Vec::new();
        for (j, v) in values.iter().enumerate() {
            let by_enum = enums.iter().find(|e| {
                (v["enum_id"].is_i64() && e["id"] == v["enum_id"])
                    || (v["enum_code"].is_string() && e["value"] == v["enum_code"])
            });
            let path = format!("custom_fields_values.{i}.values.{j}");
            match field_type {
                "select" | "multiselect" | "radiobutton" => {
                    let by_value = enums
                        .iter()
                        .find(|e| v["value"].is_string() && e["value"] == v["value"]);
                    match by_enum.or(by_value) {
                        Some(e) => norm.push(
                            json!({"value": e["value"], "enum_id": e["id"], "enum_code": null}),
                        ),
                        None => errors.push(error(
                            "NotSupportedChoice",
                            &path,
                            "The value you selected is not a valid choice.",
                        )),
                    }
                }
                "multitext" => {
                    if !v["value"].is_string() {
                        errors.push(error(
                            "InvalidType",
                            &format!("{path}.value"),
                            "This value should be of type string.",
                        ));
                        continue;
                    }
                    let e = by_enum.or_else(|| enums.first());
                    norm.push(
                        json!({"value": v["value"], "enum_id": e.map(|e| e["id"].clone()),
                                     "enum_code": e.map(|e| e["value"].clone())}),
                    );
                }
                _ => {
                    if v["value"].is_null() || v["value"].is_object() || v["value"].is_array() {
                        errors.push(error(
                            "InvalidType",
                            &format!("{path}.value"),
                            "This value should not be blank.",
                        ));
                        continue;
                    }
                    norm.push(json!({"value": v["value"]}));
                }
            }
        }
        out.push((
            id,
            json!({"field_id": id, "field_name": field["name"], "field_code": field["code"],
                   "field_type": field["type"], "values": norm}),
        ));
    }
    out
}

/// Merges normalised values into an entity: given fields replace, nulls clear.
fn apply_custom_fields(e: &mut Value, updates: Vec<(i64, Value)>) {
    if updates.is_empty() {
        return;
    }
    let mut current: Vec<Value> = e["custom_fields_values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (id, value) in updates {
        current.retain(|f| f["field_id"].as_i64() != Some(id));
        if !value.is_null() {
            current.push(value);
        }
    }
    e["custom_fields_values"] = if current.is_empty() {
        Value::Null
    } else {
        Value::Array(current)
    };
}

/// Resolves `[{id}|{name}]` against the account's tags of `kind`, creating named ones.
fn resolve_tags(
    st: &mut AmoState,
    acc: &mut Account,
    kind: Kind,
    input: &Value,
    path: &str,
    errors: &mut Vec<Value>,
) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, t) in input
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let registry = acc.tags.entry(kind).or_default();
        let found = registry.iter().find(|x| {
            (t["id"].is_i64() && x["id"] == t["id"])
                || (t["name"].is_string()
                    && x["name"].as_str().map(str::to_lowercase)
                        == t["name"].as_str().map(str::to_lowercase))
        });
        match (found, t["name"].as_str()) {
            (Some(tag), _) => out.push(tag.clone()),
            (None, Some(name)) if !name.trim().is_empty() => {
                let tag = json!({"id": st.id(), "name": name.trim(), "color": null});
                registry.push(tag.clone());
                out.push(tag);
            }
            _ => errors.push(error("NotFound", &format!("{path}.{i}"), "Tag not found")),
        }
    }
    out
}

fn add_tags(e: &mut Value, tags: Vec<Value>) {
    let mut current = e["_embedded"]["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for tag in tags {
        if !current.iter().any(|t| t["id"] == tag["id"]) {
            current.push(tag);
        }
    }
    e["_embedded"]["tags"] = Value::Array(current);
}

fn int_field(item: &Value, key: &str, errors: &mut Vec<Value>) -> Option<i64> {
    match &item[key] {
        Value::Null => None,
        v => match v.as_i64() {
            Some(i) => Some(i),
            None => {
                errors.push(error(
                    "InvalidType",
                    key,
                    "This value should be of type int.",
                ));
                None
            }
        },
    }
}

/// Resolves pipeline and status of a lead being created or moved (§3.2): a status alone selects
/// its pipeline; 142/143 stay in the given or current pipeline; nothing → first stage of main.
fn place_lead(
    acc: &Account,
    pipeline: Option<i64>,
    status: Option<i64>,
    current_pipeline: Option<i64>,
    errors: &mut Vec<Value>,
) -> Option<(i64, i64)> {
    let main = acc.main_pipeline().and_then(|p| p["id"].as_i64())?;
    let pipeline = match (pipeline, status) {
        (Some(p), _) => p,
        (None, Some(s)) if is_closed_status(Some(s)) => current_pipeline.unwrap_or(main),
        (None, Some(s)) => match current_pipeline.filter(|p| acc.has_status(*p, s)) {
            Some(p) => p,
            None => acc
                .pipelines
                .iter()
                .find(|p| p["id"].as_i64().is_some_and(|id| acc.has_status(id, s)))
                .and_then(|p| p["id"].as_i64())
                .unwrap_or(main),
        },
        (None, None) => current_pipeline.unwrap_or(main),
    };
    if acc.pipeline(pipeline).is_none() {
        errors.push(error(
            "NotSupportedChoice",
            "pipeline_id",
            "Pipeline not found",
        ));
        return None;
    }
    let status = match status {
        Some(s) if acc.has_status(pipeline, s) => s,
        Some(_) => {
            errors.push(error(
                "NotSupportedChoice",
                "status_id",
                "Status not found in the pipeline",
            ));
            return None;
        }
        None => acc.first_stage(pipeline)?,
    };
    Some((pipeline, status))
}

/// Builds a new entity from a create item; links in `_embedded` are returned separately.
fn build_entity(
    st: &mut AmoState,
    acc: &mut Account,
    ctx: &Ctx<'_>,
    kind: Kind,
    item: &Value,
    errors: &mut Vec<Value>,
) -> Option<Built> {
    let id = st.id();
    let responsible = int_field(item, "responsible_user_id", errors).unwrap_or(ctx.user_id);
    if acc.user(responsible).is_none() {
        errors.push(error(
            "NotSupportedChoice",
            "responsible_user_id",
            "User not found",
        ));
    }
    let created_by = int_field(item, "created_by", errors).unwrap_or(ctx.user_id);
    let created_at = int_field(item, "created_at", errors).unwrap_or(ctx.now);
    let name = match &item["name"] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        _ => {
            errors.push(error(
                "InvalidType",
                "name",
                "This value should be of type string.",
            ));
            None
        }
    };
    let mut e = json!({
        "id": id, "responsible_user_id": responsible, "group_id": 0, "created_by": created_by,
        "updated_by": created_by, "created_at": created_at,
        "updated_at": int_field(item, "updated_at", errors).unwrap_or(created_at),
        "closest_task_at": null, "is_deleted": false, "custom_fields_values": null,
        "account_id": acc.id, "_embedded": {"tags": []},
    });
    match kind {
        Kind::Leads => {
            let source_pipeline = item["_embedded"]["source"]["external_id"]
                .as_str()
                .and_then(|ext| acc.sources.iter().find(|s| s["external_id"] == json!(ext)))
                .and_then(|s| s["pipeline_id"].as_i64());
            let pipeline = int_field(item, "pipeline_id", errors).or(source_pipeline);
            let status = int_field(item, "status_id", errors);
            let (pipeline, status) = place_lead(acc, pipeline, status, None, errors)?;
            e["name"] = json!(name.unwrap_or_else(|| format!("Сделка #{id}")));
            e["price"] = json!(int_field(item, "price", errors).unwrap_or(0));
            e["pipeline_id"] = json!(pipeline);
            e["status_id"] = json!(status);
            e["loss_reason_id"] = json!(int_field(item, "loss_reason_id", errors));
            e["closed_at"] = if is_closed_status(Some(status)) {
                json!(int_field(item, "closed_at", errors).unwrap_or(ctx.now))
            } else {
                Value::Null
            };
            e["score"] = Value::Null;
            e["labor_cost"] = Value::Null;
        }
        Kind::Contacts => {
            let first = item["first_name"].as_str().unwrap_or("").to_owned();
            let last = item["last_name"].as_str().unwrap_or("").to_owned();
            let full = name.unwrap_or_else(|| format!("{first} {last}").trim().to_owned());
            e["name"] = json!(full);
            e["first_name"] = json!(first);
            e["last_name"] = json!(last);
            e["is_unsorted"] = json!(false);
        }
        Kind::Companies => {
            e["name"] = json!(name.unwrap_or_default());
        }
    }
    let cfv = custom_fields(acc, kind, &item["custom_fields_values"], errors);
    apply_custom_fields(&mut e, cfv);
    let mut tags = resolve_tags(st, acc, kind, &item["tags_to_add"], "tags_to_add", errors);
    tags.extend(resolve_tags(
        st,
        acc,
        kind,
        &item["_embedded"]["tags"],
        "_embedded.tags",
        errors,
    ));
    add_tags(&mut e, tags);
    let mut links = Vec::new();
    for (to, key) in [(Kind::Contacts, "contacts"), (Kind::Companies, "companies")] {
        if to == kind {
            continue;
        }
        for (i, l) in item["_embedded"][key]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match l["id"].as_i64() {
                Some(lid) if acc.entity(to, lid).is_some() => {
                    links.push((to, lid, l["is_main"].as_bool().unwrap_or(links.is_empty())));
                }
                _ => errors.push(error(
                    "NotFound",
                    &format!("_embedded.{key}.{i}.id"),
                    "Entity not found",
                )),
            }
        }
    }
    Some((e, links))
}

/// A lead left Unsorted: its contacts show up in lists from now on.
fn reveal_contacts(acc: &mut Account, lead: i64) {
    for (contact, _) in acc.linked((Kind::Leads, lead), Kind::Contacts) {
        if let Some(c) = acc
            .entities
            .get_mut(&Kind::Contacts)
            .and_then(|m| m.get_mut(&contact))
        {
            c["is_unsorted"] = json!(false);
        }
    }
}

fn store(acc: &mut Account, kind: Kind, e: Value, links: Vec<(Kind, i64, bool)>) -> i64 {
    let id = e["id"].as_i64().unwrap_or_default();
    acc.entities.entry(kind).or_default().insert(id, e);
    for (to, lid, main) in links {
        acc.link((kind, id), (to, lid), main);
    }
    id
}

fn create_entities(
    st: &mut AmoState,
    acc: &mut Account,
    ctx: &Ctx<'_>,
    kind: Kind,
    items: &Value,
) -> Response {
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut built = Vec::new();
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        let entity = build_entity(st, acc, ctx, kind, item, &mut errors);
        match entity {
            Some(entity) if errors.is_empty() => built.push((request_id(item, i), entity)),
            _ => failures.push((request_id(item, i), errors)),
        }
    }
    // All or nothing: a batch with one invalid item stores none.
    if !failures.is_empty() {
        return validation(failures);
    }
    let path = kind.as_str();
    let out: Vec<Value> = built
        .into_iter()
        .map(|(rid, (e, links))| {
            let id = store(acc, kind, e, links);
            json!({"id": id, "request_id": rid, "_links": self_link(ctx, &format!("{path}/{id}"))})
        })
        .collect();
    saved(ctx, path, out)
}

/// The answer to a batch POST or PATCH that went through: what was saved, embedded under the
/// kind's path.
fn saved(ctx: &Ctx<'_>, path: &str, out: Vec<Value>) -> Response {
    let mut embedded = Map::new();
    embedded.insert(path.to_owned(), Value::Array(out));
    hal(
        StatusCode::OK,
        json!({"_links": self_link(ctx, path), "_embedded": embedded}),
    )
}

fn patch_entities(
    st: &mut AmoState,
    acc: &mut Account,
    ctx: &Ctx<'_>,
    kind: Kind,
    body: &Value,
    id: Option<i64>,
) -> Response {
    let items: Vec<Value> = match (id, body) {
        (Some(id), Value::Object(_)) => {
            let mut item = body.clone();
            item["id"] = json!(id);
            vec![item]
        }
        (None, Value::Array(_)) => match batch(body) {
            Ok(items) => items.clone(),
            Err(response) => return *response,
        },
        _ => return problem(StatusCode::BAD_REQUEST, "Request validation failed"),
    };
    let mut updated = Vec::new();
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        let Some(existing) = item["id"]
            .as_i64()
            .and_then(|id| acc.entity(kind, id))
            .cloned()
        else {
            failures.push((
                request_id(item, i),
                vec![error("NotFound", "id", "Entity not found")],
            ));
            continue;
        };
        // Named tags are created as on POST; ids must exist.
        let add = resolve_tags(
            st,
            acc,
            kind,
            &item["tags_to_add"],
            "tags_to_add",
            &mut errors,
        );
        let mut e = patch_one(acc, ctx, kind, existing, item, &mut errors);
        add_tags(&mut e, add);
        if errors.is_empty() {
            updated.push(e);
        } else {
            failures.push((request_id(item, i), errors));
        }
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    let path = kind.as_str();
    let out: Vec<Value> = updated
        .into_iter()
        .map(|e| {
            let id = e["id"].as_i64().unwrap_or_default();
            let updated_at = e["updated_at"].clone();
            let taken = kind == Kind::Leads
                && e["pipeline_id"]
                    .as_i64()
                    .and_then(|p| acc.unsorted_status(p))
                    != e["status_id"].as_i64();
            acc.entities.entry(kind).or_default().insert(id, e);
            if taken {
                reveal_contacts(acc, id);
            }
            json!({"id": id, "updated_at": updated_at, "_links": self_link(ctx, &format!("{path}/{id}"))})
        })
        .collect();
    saved(ctx, path, out)
}

fn patch_one(
    acc: &Account,
    ctx: &Ctx<'_>,
    kind: Kind,
    mut e: Value,
    item: &Value,
    errors: &mut Vec<Value>,
) -> Value {
    for key in ["name", "first_name", "last_name"] {
        match &item[key] {
            Value::Null => {}
            Value::String(s) => e[key] = json!(s),
            _ => errors.push(error(
                "InvalidType",
                key,
                "This value should be of type string.",
            )),
        }
    }
    if let Some(r) = int_field(item, "responsible_user_id", errors) {
        if acc.user(r).is_some() {
            e["responsible_user_id"] = json!(r);
        } else {
            errors.push(error(
                "NotSupportedChoice",
                "responsible_user_id",
                "User not found",
            ));
        }
    }
    if kind == Kind::Leads {
        if let Some(p) = int_field(item, "price", errors) {
            e["price"] = json!(p);
        }
        let pipeline = int_field(item, "pipeline_id", errors);
        let status = int_field(item, "status_id", errors);
        if pipeline.is_some() || status.is_some() {
            let was_closed = is_closed_status(e["status_id"].as_i64());
            if let Some((p, s)) =
                place_lead(acc, pipeline, status, e["pipeline_id"].as_i64(), errors)
            {
                e["pipeline_id"] = json!(p);
                e["status_id"] = json!(s);
                let closed = matches!(s, STATUS_WON | STATUS_LOST);
                if closed && !was_closed {
                    e["closed_at"] = json!(ctx.now);
                } else if !closed {
                    e["closed_at"] = Value::Null;
                }
            }
        }
        if let Some(l) = int_field(item, "loss_reason_id", errors) {
            e["loss_reason_id"] = json!(l);
        }
    }
    let cfv = custom_fields(acc, kind, &item["custom_fields_values"], errors);
    apply_custom_fields(&mut e, cfv);
    let registry = acc.tags.get(&kind).cloned().unwrap_or_default();
    let find_tag = |t: &Value| {
        registry
            .iter()
            .find(|x| {
                (t["id"].is_i64() && x["id"] == t["id"])
                    || (t["name"].is_string() && x["name"] == t["name"])
            })
            .cloned()
    };
    if item["_embedded"].get("tags").is_some_and(Value::is_null) {
        e["_embedded"]["tags"] = json!([]);
    }
    for t in item["tags_to_delete"].as_array().into_iter().flatten() {
        if let Some(tag) = find_tag(t) {
            if let Some(tags) = e["_embedded"]["tags"].as_array_mut() {
                tags.retain(|x| x["id"] != tag["id"]);
            }
        }
    }
    e["updated_at"] = json!(int_field(item, "updated_at", errors).unwrap_or(ctx.now));
    e["updated_by"] = json!(ctx.user_id);
    e
}

/// `POST /api/v4/leads/complex` (§3.5): lead + one contact + one company per item, linked to each
/// other; the answer is a bare array. Duplicate control is off in the fake (`merged: false`).
fn complex(st: &mut AmoState, acc: &mut Account, ctx: &Ctx<'_>, items: &Value) -> Response {
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut built = Vec::new();
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        let embedded = &item["_embedded"];
        let mut related = Vec::new();
        for (kind, key) in [(Kind::Contacts, "contacts"), (Kind::Companies, "companies")] {
            let Some(first) = embedded[key].as_array().and_then(|a| a.first()) else {
                continue;
            };
            match first["id"].as_i64() {
                Some(id) if acc.entity(kind, id).is_some() => related.push((kind, Err(id))),
                Some(_) => errors.push(error(
                    "NotFound",
                    &format!("_embedded.{key}.0.id"),
                    "Entity not found",
                )),
                None => {
                    let mut sub = Vec::new();
                    if let Some((e, _)) = build_entity(st, acc, ctx, kind, first, &mut sub) {
                        related.push((kind, Ok(e)));
                    }
                    errors.extend(sub.into_iter().map(|mut err| {
                        err["path"] = json!(format!(
                            "_embedded.{key}.0.{}",
                            err["path"].as_str().unwrap_or("")
                        ));
                        err
                    }));
                }
            }
        }
        let mut lead_item = item.clone();
        if let Some(emb) = lead_item
            .get_mut("_embedded")
            .and_then(Value::as_object_mut)
        {
            emb.remove("contacts");
            emb.remove("companies");
        }
        let lead = build_entity(st, acc, ctx, Kind::Leads, &lead_item, &mut errors);
        match lead {
            Some((mut lead, _)) if errors.is_empty() => {
                // With metadata (forms/sip) the lead lands in Unsorted whatever status was asked.
                if embedded["metadata"].is_object() {
                    if let Some(s) = lead["pipeline_id"]
                        .as_i64()
                        .and_then(|p| acc.unsorted_status(p))
                    {
                        lead["status_id"] = json!(s);
                    }
                }
                built.push((request_id(item, i), lead, related));
            }
            _ => failures.push((request_id(item, i), errors)),
        }
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    let mut out = Vec::new();
    for (rid, lead, related) in built {
        let lead_id = store(acc, Kind::Leads, lead, Vec::new());
        let mut contact_id = None;
        let mut company_id = None;
        for (kind, entity) in related {
            let id = match entity {
                Ok(e) => store(acc, kind, e, Vec::new()),
                Err(existing) => existing,
            };
            acc.link((Kind::Leads, lead_id), (kind, id), kind == Kind::Contacts);
            match kind {
                Kind::Contacts => contact_id = Some(id),
                _ => company_id = Some(id),
            }
        }
        if let (Some(c), Some(co)) = (contact_id, company_id) {
            acc.link((Kind::Contacts, c), (Kind::Companies, co), false);
        }
        out.push(
            json!({"id": lead_id, "contact_id": contact_id, "company_id": company_id,
                        "request_id": [rid], "merged": false}),
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Value::Array(out).to_string(),
    )
        .into_response()
}

fn link_json(acc: &Account, from: (Kind, i64), to: (Kind, i64)) -> Value {
    let main = acc
        .links
        .iter()
        .find(|l| l.other(from) == Some(to))
        .is_some_and(|l| l.main);
    let metadata = if to.0 == Kind::Contacts || from.0 == Kind::Contacts {
        json!({"main_contact": main})
    } else {
        Value::Null
    };
    json!({"entity_id": from.1, "entity_type": from.0.as_str(), "to_entity_id": to.1,
           "to_entity_type": to.0.as_str(), "metadata": metadata})
}

fn links_of(acc: &Account, from: (Kind, i64)) -> Vec<Value> {
    acc.links
        .iter()
        .filter_map(|l| l.other(from))
        .map(|to| link_json(acc, from, to))
        .collect()
}

/// `POST /api/v4/{entity}/{id}/link|unlink` (§3.7).
fn link(
    acc: &mut Account,
    ctx: &Ctx<'_>,
    kind: Kind,
    id: i64,
    items: &Value,
    add: bool,
) -> Response {
    if acc.entity(kind, id).is_none() {
        return problem(StatusCode::NOT_FOUND, "Entity not found");
    }
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let to_kind = item["to_entity_type"].as_str().and_then(Kind::parse);
        let to_id = item["to_entity_id"].as_i64();
        match (to_kind, to_id) {
            (Some(k), Some(t)) if k != kind && acc.entity(k, t).is_some() => {
                targets.push(((k, t), item["metadata"]["is_main"].as_bool()));
            }
            _ => failures.push((
                i.to_string(),
                vec![error(
                    "NotFound",
                    "to_entity_id",
                    "Entity to link not found",
                )],
            )),
        }
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    if !add {
        for (to, _) in targets {
            acc.links.retain(|l| l.other((kind, id)) != Some(to));
        }
        return no_content();
    }
    let mut out = Vec::new();
    for (to, is_main) in targets {
        let main = is_main.unwrap_or_else(|| {
            to.0 == Kind::Contacts && acc.linked((kind, id), Kind::Contacts).is_empty()
        });
        acc.link((kind, id), to, main);
        out.push(link_json(acc, (kind, id), to));
    }
    hal(
        StatusCode::OK,
        json!({"_total_items": out.len(), "_links": self_link(ctx, &format!("{}/{id}/link", kind.as_str())),
               "_embedded": {"links": out}}),
    )
}

const NOTE_TYPES: &[&str] = &[
    "common",
    "call_in",
    "call_out",
    "service_message",
    "extended_service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "attachment",
];

/// `POST /api/v4/{entity}/notes` and `/{entity}/{id}/notes` (§3.8).
fn add_notes(
    st: &mut AmoState,
    acc: &mut Account,
    ctx: &Ctx<'_>,
    kind: Kind,
    entity: Option<i64>,
    items: &Value,
) -> Response {
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut built = Vec::new();
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        let entity_id = entity.or_else(|| item["entity_id"].as_i64());
        if entity_id.is_none_or(|id| acc.entity(kind, id).is_none()) {
            errors.push(error("NotFound", "entity_id", "Entity not found"));
        }
        let note_type = item["note_type"].as_str().unwrap_or("");
        if !NOTE_TYPES.contains(&note_type) {
            errors.push(error(
                "NotSupportedChoice",
                "note_type",
                "The value you selected is not a valid choice.",
            ));
        }
        let text_needed = matches!(
            note_type,
            "common" | "service_message" | "extended_service_message" | "sms_in" | "sms_out"
        );
        if text_needed && !item["params"]["text"].is_string() {
            errors.push(error(
                "NotBlank",
                "params.text",
                "This value should not be blank.",
            ));
        }
        let responsible =
            int_field(item, "responsible_user_id", &mut errors).unwrap_or(ctx.user_id);
        let created_by = int_field(item, "created_by", &mut errors).unwrap_or(ctx.user_id);
        if !errors.is_empty() {
            failures.push((request_id(item, i), errors));
            continue;
        }
        let id = st.id();
        let created_at = item["created_at"].as_i64().unwrap_or(ctx.now);
        built.push((
            request_id(item, i),
            json!({"id": id, "entity_id": entity_id, "entity_type": kind.as_str(), "note_type": note_type,
                   "params": item["params"], "responsible_user_id": responsible, "group_id": 0,
                   "created_by": created_by, "updated_by": created_by, "created_at": created_at,
                   "updated_at": created_at, "is_deleted": false, "account_id": acc.id,
                   "_links": self_link(ctx, &format!("{}/notes/{id}", kind.as_str()))}),
        ));
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    let out: Vec<Value> = built
        .into_iter()
        .map(|(rid, note)| {
            let answer = json!({"id": note["id"], "entity_id": note["entity_id"], "request_id": rid,
                                "_links": note["_links"]});
            acc.notes.push(note);
            answer
        })
        .collect();
    hal(
        StatusCode::OK,
        json!({"_links": self_link(ctx, &format!("{}/notes", kind.as_str())), "_embedded": {"notes": out}}),
    )
}

fn list_notes(acc: &Account, ctx: &Ctx<'_>, kind: Kind, entity_ids: Vec<i64>) -> Response {
    let types = ctx.values("filter[note_type]");
    let notes: Vec<Value> = acc
        .notes
        .iter()
        .filter(|n| n["entity_type"] == json!(kind.as_str()))
        .filter(|n| {
            entity_ids.is_empty()
                || n["entity_id"]
                    .as_i64()
                    .is_some_and(|e| entity_ids.contains(&e))
        })
        .filter(|n| {
            types.is_empty()
                || n["note_type"]
                    .as_str()
                    .is_some_and(|t| types.iter().any(|x| x == t))
        })
        .cloned()
        .collect();
    list_or_204(ctx, &format!("{}/notes", kind.as_str()), "notes", notes)
}

/// `POST /api/v4/tasks` (§3.9): `text` and `complete_till` required.
fn add_tasks(st: &mut AmoState, acc: &mut Account, ctx: &Ctx<'_>, items: &Value) -> Response {
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        if item["text"].as_str().is_none_or(str::is_empty) {
            errors.push(error("NotBlank", "text", "This value should not be blank."));
        }
        if !item["complete_till"].is_i64() {
            errors.push(error(
                "NotBlank",
                "complete_till",
                "This value should not be blank.",
            ));
        }
        if !errors.is_empty() {
            failures.push((request_id(item, i), errors));
        }
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = st.id();
        let mut task = item.clone();
        task["id"] = json!(id);
        task["is_completed"] = json!(false);
        task["created_at"] = json!(ctx.now);
        task["account_id"] = json!(acc.id);
        if task["responsible_user_id"].is_null() {
            task["responsible_user_id"] = json!(ctx.user_id);
        }
        if let Some(map) = task.as_object_mut() {
            map.remove("request_id");
        }
        acc.tasks.push(task);
        out.push(json!({"id": id, "request_id": request_id(item, i), "_links": self_link(ctx, &format!("tasks/{id}"))}));
    }
    hal(
        StatusCode::OK,
        json!({"_links": self_link(ctx, "tasks"), "_embedded": {"tasks": out}}),
    )
}

/// `POST /api/v4/contacts/chats` (§3.13): a chat belongs to one contact.
fn link_chats(st: &mut AmoState, acc: &mut Account, items: &Value) -> Response {
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        if item["contact_id"]
            .as_i64()
            .is_none_or(|c| acc.entity(Kind::Contacts, c).is_none())
        {
            errors.push(error("NotFound", "contact_id", "Contact not found"));
        }
        if !item["chat_id"]
            .as_str()
            .is_some_and(|c| acc.chats.iter().any(|chat| chat.id == c))
        {
            errors.push(error("NotFound", "chat_id", "Chat not found"));
        }
        if !errors.is_empty() {
            failures.push((request_id(item, i), errors));
        }
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let chat_id = item["chat_id"].clone();
        acc.chat_links.retain(|l| l["chat_id"] != chat_id);
        let stored = json!({"chat_id": chat_id, "contact_id": item["contact_id"], "id": st.id()});
        acc.chat_links.push(stored.clone());
        let mut answer = stored;
        answer["request_id"] = json!(request_id(item, i));
        out.push(answer);
    }
    hal(
        StatusCode::OK,
        json!({"_total_items": out.len(), "_embedded": {"chats": out}}),
    )
}

/// `GET|POST|DELETE /api/v4/webhooks` (§3.11): stored, not emitted.
fn webhooks(acc: &mut Account, ctx: &Ctx<'_>, method: &Method, body: Option<Value>) -> Response {
    if is_method(method, "GET") {
        let destination = ctx.param("filter[destination]");
        let hooks: Vec<Value> = acc
            .webhooks
            .iter()
            .filter(|h| destination.is_none_or(|d| h["destination"] == json!(d)))
            .cloned()
            .collect();
        return list_or_204(ctx, "webhooks", "webhooks", hooks);
    }
    let Some(body) = body else {
        return bad_json();
    };
    let Some(destination) = body["destination"].as_str().map(str::to_owned) else {
        return validation(vec![(
            "0".to_owned(),
            vec![error(
                "NotBlank",
                "destination",
                "This value should not be blank.",
            )],
        )]);
    };
    if is_method(method, "DELETE") {
        let before = acc.webhooks.len();
        acc.webhooks
            .retain(|h| h["destination"] != json!(destination));
        return if acc.webhooks.len() < before {
            no_content()
        } else {
            problem(StatusCode::NOT_FOUND, "Webhook not found")
        };
    }
    if !is_method(method, "POST") {
        return not_found();
    }
    let Some(settings) = body["settings"].as_array().filter(|s| !s.is_empty()) else {
        return validation(vec![(
            "0".to_owned(),
            vec![error(
                "NotBlank",
                "settings",
                "This value should not be blank.",
            )],
        )]);
    };
    let id = acc
        .webhooks
        .iter()
        .find(|h| h["destination"] == json!(destination))
        .map(|h| h["id"].clone())
        .unwrap_or_else(|| json!(acc.webhooks.len() + 1));
    acc.webhooks
        .retain(|h| h["destination"] != json!(destination));
    let hook = json!({"id": id, "destination": destination, "created_at": ctx.now, "updated_at": ctx.now,
                      "account_id": acc.id, "created_by": ctx.user_id, "sort": body["sort"].as_i64().unwrap_or(1),
                      "disabled": false, "settings": settings});
    acc.webhooks.push(hook.clone());
    hal(StatusCode::CREATED, hook)
}

/// `POST /api/v4/sources` (§3.12).
fn add_sources(st: &mut AmoState, acc: &mut Account, ctx: &Ctx<'_>, items: &Value) -> Response {
    let items = match batch(items) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        if !item["name"].is_string() {
            errors.push(error("NotBlank", "name", "This value should not be blank."));
        }
        match item["external_id"].as_str() {
            Some(ext) if acc.sources.iter().any(|s| s["external_id"] == json!(ext)) => {
                errors.push(error(
                    "NotUnique",
                    "external_id",
                    "Source with this external_id exists",
                ));
            }
            Some(_) => {}
            None => errors.push(error(
                "NotBlank",
                "external_id",
                "This value should not be blank.",
            )),
        }
        if item["pipeline_id"]
            .as_i64()
            .is_some_and(|p| acc.pipeline(p).is_none())
        {
            errors.push(error(
                "NotSupportedChoice",
                "pipeline_id",
                "Pipeline not found",
            ));
        }
        if !errors.is_empty() {
            failures.push((request_id(item, i), errors));
        }
    }
    if !failures.is_empty() {
        return validation(failures);
    }
    let main = acc.main_pipeline().and_then(|p| p["id"].as_i64());
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let source = json!({"id": st.id(), "name": item["name"], "external_id": item["external_id"],
                            "pipeline_id": item["pipeline_id"].as_i64().or(main),
                            "default": item["default"].as_bool().unwrap_or(false),
                            "origin_code": item["origin_code"], "services": item["services"],
                            "account_id": acc.id});
        acc.sources.push(source.clone());
        let mut answer = source;
        answer["request_id"] = json!(request_id(item, i));
        out.push(answer);
    }
    hal(
        StatusCode::OK,
        json!({"_total_items": out.len(), "_links": self_link(ctx, "sources"), "_embedded": {"sources": out}}),
    )
}
