//! The amoCRM REST API v4 client (§2–§3) for one account and access token; it implements `Crm`.
//!
//! Every request waits for the account's `RateLimiter` first. Answers are classified by
//! `classify` (§2.1): 401 → `Unauthorized` (the caller refreshes and retries once), 429 →
//! `RateLimited` (Retry-After when given), 5xx and network errors → `Transient`, everything else
//! `Permanent` with amoCRM's `validation-errors` as field problems. 204 is an empty result.

use std::fmt;

use async_trait::async_trait;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::chats::ChatsClient;
use super::limiter::RateLimiter;
use super::{transport_error, STATUS_LOST, STATUS_WON};
use crate::{
    normalize_phone, BatchItem, ChatMessage, ChatSent, ContactChange, ContactCreated, ContactQuery,
    Crm, CrmAccount, CrmContact, CrmDeal, CrmError, CrmId, CrmUser, CustomField, DealCreated,
    DealDraft, DeliveryStatus, DraftContact, EntityKind, FieldEnum, MarkedDeal, NewContact,
    NewDeal, Pipeline, Stage, StageKind,
};

/// `leads/complex` takes at most this many leads per request (§3.5).
pub const MAX_COMPLEX: usize = 50;
/// How many of a contact's newest deals `find_open_deal` reads (one request each, because the
/// `filter[id]` list needs amoCRM's paid filter add-on).
pub const OPEN_DEAL_LOOKBACK: usize = 25;
/// `retry_after` for a 429 without a Retry-After header (the limit is per second).
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// Pages read at most from one list (250 users or 50 fields per page).
const MAX_PAGES: u32 = 100;

/// A REST v4 client for one account. `Debug` never shows the token.
#[derive(Clone)]
pub struct AmoCrm {
    http: reqwest::Client,
    base_url: String,
    access_token: String,
    limiter: RateLimiter,
    chat: Option<ChatLink>,
}

#[derive(Clone, Debug)]
struct ChatLink {
    client: ChatsClient,
    scope_id: String,
}

impl fmt::Debug for AmoCrm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmoCrm")
            .field("base_url", &self.base_url)
            .field("access_token", &"<redacted>")
            .field("limiter", &self.limiter.limit())
            .field("chat", &self.chat)
            .finish()
    }
}

/// A user as `GET /api/v4/users/{id}` describes them (§1.8, §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDetails {
    pub id: CrmId,
    pub name: String,
    pub email: Option<String>,
    pub lang: Option<String>,
    pub is_admin: bool,
}

impl AmoCrm {
    /// `base_url` is the account's (`https://acme.amocrm.ru`, from `AccountHosts`); `limiter` is
    /// the account's shared bucket. Timeouts come from `http`.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        access_token: &str,
        limiter: RateLimiter,
    ) -> Self {
        AmoCrm {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            access_token: access_token.trim().to_owned(),
            limiter,
            chat: None,
        }
    }

    /// Enables the CRM's chat: messages go through `client` into the connected `scope_id`.
    pub fn with_chats(mut self, client: ChatsClient, scope_id: &str) -> Self {
        self.chat = Some(ChatLink {
            client,
            scope_id: scope_id.to_owned(),
        });
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// One request: waits for the limiter, sends, classifies. `Ok(None)` is a 204.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, CrmError> {
        self.limiter.acquire().await;
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.access_token)
            .query(query);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| transport_error(&what, e))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| transport_error(&what, e))?;
        if !(200..300).contains(&status) {
            let e = classify(status, &bytes, retry_after);
            tracing::debug!(%what, status, error = %e, "amoCRM refused");
            return Err(e);
        }
        if status == 204 || bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| unexpected(&what, e))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, CrmError> {
        match self.call(Method::GET, path, query, None).await? {
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| unexpected(path, e)),
            None => Ok(None),
        }
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, CrmError> {
        let v = self
            .call(Method::POST, path, &[], Some(body))
            .await?
            .ok_or_else(|| CrmError::permanent(format!("POST {path}: empty answer")))?;
        serde_json::from_value(v).map_err(|e| unexpected(path, e))
    }

    /// Reads every page of a HAL list, `_embedded.{key}` of each.
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        limit: u32,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, CrmError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("limit", limit.to_string()));
            let Some(v) = self.call(Method::GET, path, &q, None).await? else {
                break;
            };
            let items = v["_embedded"][key].clone();
            if !items.is_null() {
                let items: Vec<T> =
                    serde_json::from_value(items).map_err(|e| unexpected(path, e))?;
                out.extend(items);
            }
            if v["_links"]["next"].is_null() {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /api/v4/users/{id}` (admin only: 403 → `Permanent`).
    pub async fn user(&self, id: CrmId) -> Result<UserDetails, CrmError> {
        let u: UserRead = self
            .get(&format!("/api/v4/users/{id}"), &[])
            .await?
            .ok_or_else(|| CrmError::permanent(format!("user {id} not found")))?;
        Ok(UserDetails {
            id: u.id,
            name: u.name,
            email: u.email.filter(|e| !e.is_empty()),
            lang: u.lang,
            is_admin: u.rights.is_admin,
        })
    }

    /// `GET /api/v4/contacts?query=…&with=leads` (§3.6); an empty list on 204.
    async fn search_contacts(&self, query: &str) -> Result<Vec<ContactRead>, CrmError> {
        let q = [
            ("query", query.to_owned()),
            ("with", "leads".to_owned()),
            ("limit", "50".to_owned()),
        ];
        let page: Option<Embedded<ContactsKey>> = self.get("/api/v4/contacts", &q).await?;
        Ok(page.map(|p| p.embedded.contacts).unwrap_or_default())
    }

    async fn get_lead(&self, id: CrmId) -> Result<Option<LeadRead>, CrmError> {
        self.get(&format!("/api/v4/leads/{id}"), &[]).await
    }

    fn chat(&self) -> Result<&ChatLink, CrmError> {
        self.chat
            .as_ref()
            .ok_or_else(|| CrmError::permanent("the amoCRM chat channel is not configured"))
    }
}

fn unexpected(what: &str, e: serde_json::Error) -> CrmError {
    // Not retryable: a write may well have taken effect.
    CrmError::permanent(format!("{what}: unexpected answer: {e}"))
}

mod classify;
mod wire;

pub use classify::classify;
pub(crate) use classify::retry_after;
use wire::*;

#[async_trait]
impl Crm for AmoCrm {
    async fn account(&self) -> Result<CrmAccount, CrmError> {
        let a: AccountRead = self
            .get(
                "/api/v4/account",
                &[("with", "amojo_id,datetime_settings".to_owned())],
            )
            .await?
            .ok_or_else(|| CrmError::permanent("GET /api/v4/account: empty answer"))?;
        Ok(CrmAccount {
            timezone: a.embedded["datetime_settings"]["timezone"]
                .as_str()
                .map(str::to_owned),
            id: a.id,
            name: a.name,
            subdomain: a.subdomain,
            current_user_id: a.current_user_id,
            country: a.country,
            is_unsorted_on: a.is_unsorted_on,
            chat_account_id: a.amojo_id.filter(|s| !s.is_empty()),
        })
    }

    async fn pipelines(&self) -> Result<Vec<Pipeline>, CrmError> {
        let v: Option<Value> = self.get("/api/v4/leads/pipelines", &[]).await?;
        let list = v
            .map(|v| v["_embedded"]["pipelines"].clone())
            .unwrap_or(Value::Null);
        let list: Vec<PipelineRead> = if list.is_null() {
            Vec::new()
        } else {
            serde_json::from_value(list).map_err(|e| unexpected("pipelines", e))?
        };
        Ok(list
            .into_iter()
            .map(|p| Pipeline {
                id: p.id,
                name: p.name,
                sort: p.sort,
                is_main: p.is_main,
                is_archive: p.is_archive,
                statuses: p
                    .embedded
                    .statuses
                    .into_iter()
                    .map(|s| Stage {
                        kind: match (s.id, s.kind) {
                            (STATUS_WON, _) => StageKind::Won,
                            (STATUS_LOST, _) => StageKind::Lost,
                            (_, 1) => StageKind::Unsorted,
                            _ => StageKind::Regular,
                        },
                        id: s.id,
                        name: s.name,
                        sort: s.sort,
                        color: s.color,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn users(&self) -> Result<Vec<CrmUser>, CrmError> {
        let users: Vec<UserRead> = self
            .list_all(
                "/api/v4/users",
                "users",
                250,
                &[("with", "amojo_id".to_owned())],
            )
            .await?;
        Ok(users
            .into_iter()
            .map(|u| CrmUser {
                id: u.id,
                name: u.name,
                email: u.email.filter(|e| !e.is_empty()),
                is_admin: u.rights.is_admin,
                is_active: u.rights.is_active,
                is_free: u.rights.is_free,
                chat_user_id: u.amojo_id.filter(|s| !s.is_empty()),
            })
            .collect())
    }

    async fn custom_fields(&self, entity: EntityKind) -> Result<Vec<CustomField>, CrmError> {
        let path = match entity {
            EntityKind::Deals => "/api/v4/leads/custom_fields",
            EntityKind::Contacts => "/api/v4/contacts/custom_fields",
            EntityKind::Companies => "/api/v4/companies/custom_fields",
        };
        let fields: Vec<CustomFieldRead> = self.list_all(path, "custom_fields", 50, &[]).await?;
        Ok(fields
            .into_iter()
            .map(|f| CustomField {
                id: f.id,
                name: f.name,
                code: f.code.filter(|c| !c.is_empty()),
                field_type: f.field_type,
                entity,
                enums: f
                    .enums
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| FieldEnum {
                        id: e.id,
                        value: e.value,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn find_contact(&self, query: &ContactQuery) -> Result<Option<CrmContact>, CrmError> {
        // `query` is a substring search over however the account formatted the value (§3.6):
        // search phones by their last 10 digits, then compare candidates exactly.
        for phone in query.phones.iter().filter_map(|p| normalize_phone(p)) {
            let tail: String = {
                let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
                digits[digits.len().saturating_sub(10)..].iter().collect()
            };
            let found = self.search_contacts(&tail).await?;
            if let Some(c) = found
                .into_iter()
                .filter(|c| c.phones().contains(&phone))
                .min_by_key(|c| c.id)
            {
                return Ok(Some(c.into_contact()));
            }
        }
        for email in &query.emails {
            let email = email.trim().to_lowercase();
            let found = self.search_contacts(&email).await?;
            if let Some(c) = found
                .into_iter()
                .filter(|c| c.emails().contains(&email))
                .min_by_key(|c| c.id)
            {
                return Ok(Some(c.into_contact()));
            }
        }
        for key in &query.messenger_keys {
            let wanted = key.value.trim();
            if wanted.is_empty() {
                continue;
            }
            let found = self.search_contacts(wanted).await?;
            if let Some(c) = found
                .into_iter()
                .filter(|c| c.has_value(key.field_id, wanted))
                .min_by_key(|c| c.id)
            {
                return Ok(Some(c.into_contact()));
            }
        }
        Ok(None)
    }

    async fn create_contact(&self, contact: &NewContact) -> Result<ContactCreated, CrmError> {
        let company_id = match &contact.company {
            Some(company) => {
                let mut body = company_json(company);
                body["request_id"] = json!("0");
                let r: Embedded<CreatedKey> =
                    self.post("/api/v4/companies", &json!([body])).await?;
                Some(first_id(&r.embedded.companies, "POST /api/v4/companies")?)
            }
            None => None,
        };
        let mut body = contact_json(contact);
        body["request_id"] = json!("0");
        let r: Embedded<CreatedKey> = self.post("/api/v4/contacts", &json!([body])).await?;
        let contact_id = first_id(&r.embedded.contacts, "POST /api/v4/contacts")?;
        if let Some(company_id) = company_id {
            // POST /contacts has no companies embed (§3.6): link them (§3.7).
            let link = json!([{ "to_entity_id": company_id, "to_entity_type": "companies" }]);
            self.call(
                Method::POST,
                &format!("/api/v4/contacts/{contact_id}/link"),
                &[],
                Some(&link),
            )
            .await?;
        }
        Ok(ContactCreated {
            contact_id,
            company_id,
        })
    }

    async fn update_contact(
        &self,
        contact_id: CrmId,
        change: &ContactChange,
    ) -> Result<(), CrmError> {
        let body = contact_change_json(change);
        self.call(
            Method::PATCH,
            &format!("/api/v4/contacts/{contact_id}"),
            &[],
            Some(&body),
        )
        .await?;
        Ok(())
    }

    async fn link_deal_contact(&self, deal_id: CrmId, contact_id: CrmId) -> Result<(), CrmError> {
        let body = json!([{ "to_entity_id": contact_id, "to_entity_type": "contacts" }]);
        self.call(
            Method::POST,
            &format!("/api/v4/leads/{deal_id}/link"),
            &[],
            Some(&body),
        )
        .await?;
        Ok(())
    }

    async fn find_open_deal(&self, contact_id: CrmId) -> Result<Option<CrmDeal>, CrmError> {
        let contact: Option<ContactRead> = self
            .get(
                &format!("/api/v4/contacts/{contact_id}"),
                &[("with", "leads".to_owned())],
            )
            .await?;
        let Some(contact) = contact else {
            return Ok(None);
        };
        let mut ids: Vec<CrmId> = contact.embedded.leads.iter().map(|l| l.id).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids.into_iter().take(OPEN_DEAL_LOOKBACK) {
            if let Some(lead) = self.get_lead(id).await? {
                if !lead.is_deleted && lead.status_id != STATUS_WON && lead.status_id != STATUS_LOST
                {
                    return Ok(Some(lead.into_deal()));
                }
            }
        }
        Ok(None)
    }

    async fn create_deal(&self, deal: &NewDeal) -> Result<DealCreated, CrmError> {
        let mut body = lead_json(deal);
        if let Some(c) = deal.contact_id {
            body["_embedded"] = json!({ "contacts": [{ "id": c, "is_main": true }] });
        }
        let r: Embedded<CreatedKey> = self.post("/api/v4/leads", &json!([body])).await?;
        Ok(DealCreated {
            deal_id: first_id(&r.embedded.leads, "POST /api/v4/leads")?,
            contact_id: deal.contact_id,
            company_id: None,
            merged: false,
        })
    }

    fn max_batch(&self) -> usize {
        MAX_COMPLEX
    }

    async fn create_deals(&self, drafts: &[DealDraft]) -> Result<Vec<BatchItem>, CrmError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        if drafts.len() > MAX_COMPLEX {
            return Err(CrmError::permanent(format!(
                "leads/complex takes at most {MAX_COMPLEX} deals, got {}",
                drafts.len()
            )));
        }
        let body: Vec<Value> = drafts
            .iter()
            .map(|d| {
                let mut lead = lead_json(&d.deal);
                lead["_embedded"] = match &d.contact {
                    DraftContact::Existing(id) => json!({ "contacts": [{ "id": id }] }),
                    DraftContact::New(c) => {
                        let mut e = json!({ "contacts": [contact_json(c)] });
                        if let Some(company) = &c.company {
                            e["companies"] = json!([company_json(company)]);
                        }
                        e
                    }
                };
                // With form metadata the deal lands in Unsorted (§3.5, §3.10).
                if let Some(form) = &d.deal.unsorted_form {
                    lead["_embedded"]["metadata"] = json!({
                        "category": "forms",
                        "form_id": "chatter",
                        "form_name": form,
                        "form_page": form,
                        "form_sent_at": chrono::Utc::now().timestamp(),
                    });
                }
                lead
            })
            .collect();
        match self
            .post::<Vec<ComplexResult>>("/api/v4/leads/complex", &Value::Array(body))
            .await
        {
            Ok(results) => Ok(complex_results(drafts, results)),
            Err(CrmError::Permanent { message, fields }) if !fields.is_empty() => {
                Ok(refused_batch(drafts, &message, &fields))
            }
            Err(e) => Err(e),
        }
    }

    async fn find_marked_deals(&self, marker: &str) -> Result<Vec<MarkedDeal>, CrmError> {
        let marker = marker.trim();
        if marker.is_empty() {
            return Ok(Vec::new());
        }
        // One page: a marker belongs to one batch of at most `MAX_COMPLEX` deals.
        let q = [
            ("query", marker.to_owned()),
            ("with", "contacts".to_owned()),
            ("limit", "250".to_owned()),
        ];
        let page: Option<Value> = self.get("/api/v4/leads", &q).await?;
        let leads = page
            .map(|p| p["_embedded"]["leads"].clone())
            .unwrap_or(Value::Null);
        if leads.is_null() {
            return Ok(Vec::new());
        }
        let leads: Vec<MarkedLeadRead> =
            serde_json::from_value(leads).map_err(|e| unexpected("GET /api/v4/leads", e))?;
        Ok(leads
            .into_iter()
            .filter(|l| !l.is_deleted)
            .filter_map(|l| l.marked(marker))
            .collect())
    }

    async fn recently_changed_deals(&self, limit: usize) -> Result<Vec<CrmDeal>, CrmError> {
        let q = [
            ("order[updated_at]", "desc".to_owned()),
            ("limit", limit.clamp(1, 250).to_string()),
        ];
        let page: Option<Value> = self.get("/api/v4/leads", &q).await?;
        let leads = page
            .map(|p| p["_embedded"]["leads"].clone())
            .unwrap_or(Value::Null);
        if leads.is_null() {
            return Ok(Vec::new());
        }
        let leads: Vec<LeadRead> =
            serde_json::from_value(leads).map_err(|e| unexpected("GET /api/v4/leads", e))?;
        Ok(leads
            .into_iter()
            .filter(|l| !l.is_deleted)
            .map(LeadRead::into_deal)
            .collect())
    }

    async fn add_note(&self, deal_id: CrmId, text: &str) -> Result<CrmId, CrmError> {
        let body = json!([{
            "entity_id": deal_id,
            "note_type": "common",
            "params": { "text": text },
            "request_id": "0",
        }]);
        let r: Embedded<CreatedKey> = self.post("/api/v4/leads/notes", &body).await?;
        first_id(&r.embedded.notes, "POST /api/v4/leads/notes")
    }

    async fn add_notes(&self, notes: &[(CrmId, String)]) -> Result<Vec<CrmId>, CrmError> {
        if notes.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = notes
            .iter()
            .enumerate()
            .map(|(i, (deal, text))| {
                json!({
                    "entity_id": deal,
                    "note_type": "common",
                    "params": { "text": text },
                    "request_id": i.to_string(),
                })
            })
            .collect();
        let r: Embedded<CreatedKey> = self
            .post("/api/v4/leads/notes", &Value::Array(body))
            .await?;
        if r.embedded.notes.len() != notes.len() {
            return Err(CrmError::permanent(format!(
                "POST /api/v4/leads/notes: asked for {} notes, amoCRM reported {}",
                notes.len(),
                r.embedded.notes.len()
            )));
        }
        Ok(r.embedded.notes.iter().map(|n| n.id).collect())
    }

    async fn set_deal_responsible(&self, deal_id: CrmId, user_id: CrmId) -> Result<(), CrmError> {
        let body = json!({ "responsible_user_id": user_id });
        self.call(
            Method::PATCH,
            &format!("/api/v4/leads/{deal_id}"),
            &[],
            Some(&body),
        )
        .await?;
        Ok(())
    }

    async fn move_deal(
        &self,
        deal_id: CrmId,
        pipeline_id: Option<CrmId>,
        status_id: CrmId,
    ) -> Result<(), CrmError> {
        let body = match pipeline_id {
            Some(p) => json!({ "pipeline_id": p, "status_id": status_id }),
            None => json!({ "status_id": status_id }),
        };
        self.call(
            Method::PATCH,
            &format!("/api/v4/leads/{deal_id}"),
            &[],
            Some(&body),
        )
        .await?;
        Ok(())
    }

    fn supports_chat(&self) -> bool {
        self.chat.is_some()
    }

    async fn send_chat_message(&self, message: &ChatMessage) -> Result<ChatSent, CrmError> {
        let chat = self.chat()?;
        chat.client.send_message(&chat.scope_id, message).await
    }

    async fn link_chat(&self, contact_id: CrmId, conversation_ref: &str) -> Result<(), CrmError> {
        let body =
            json!([{ "contact_id": contact_id, "chat_id": conversation_ref, "request_id": "0" }]);
        self.call(Method::POST, "/api/v4/contacts/chats", &[], Some(&body))
            .await?;
        Ok(())
    }

    async fn link_chats(&self, links: &[(CrmId, String)]) -> Result<(), CrmError> {
        if links.is_empty() {
            return Ok(());
        }
        let body: Vec<Value> = links
            .iter()
            .enumerate()
            .map(|(i, (contact, chat))| {
                json!({ "contact_id": contact, "chat_id": chat, "request_id": i.to_string() })
            })
            .collect();
        self.call(
            Method::POST,
            "/api/v4/contacts/chats",
            &[],
            Some(&Value::Array(body)),
        )
        .await?;
        Ok(())
    }

    async fn update_delivery_status(
        &self,
        message_ref: &str,
        status: &DeliveryStatus,
    ) -> Result<(), CrmError> {
        let chat = self.chat()?;
        chat.client
            .delivery_status(&chat.scope_id, message_ref, status)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = AmoCrm::new(
            reqwest::Client::new(),
            "https://acme.amocrm.ru/",
            "secret-token",
            RateLimiter::new(Default::default()),
        );
        let s = format!("{c:?}");
        assert!(!s.contains("secret-token"), "{s}");
        assert_eq!(c.base_url(), "https://acme.amocrm.ru");
    }
}
