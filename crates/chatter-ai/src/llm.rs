//! The optional LLM backend (spec 2.2): any OpenAI-compatible chat-completions endpoint, and the
//! [`Cascade`] that asks it only where the embedded model is unsure.
//!
//! - [`LlmClient`]: base URL, model, `Bearer` or `Api-Key` auth, extra headers, an extra root
//!   CA, a timeout; structured output
//!   asked as `json_schema`, falling back to `json_object` and then to a prompt-only request
//!   when a server refuses the format with 400 (the fallback sticks for the client's life); the
//!   answer parsed defensively (fenced or surrounded JSON, score clamped to 0..1); 429 and 5xx
//!   retried with backoff (`Retry-After` honoured up to a cap).
//! - [`Cascade`]: the embedded verdict stands when its score is outside the uncertain band;
//!   inside it, a cache by normalised text, then a monthly call budget, then the LLM. An LLM
//!   failure or an exhausted budget leaves the embedded verdict standing and says why.
//!
//! This is the crate's only IO. The month is given by the caller (time comes from its clock).

use crate::model::LeadModel;
use crate::Verdict;
use chatter_domain::stem::fold;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Bumped when the prompt changes, so cached verdicts of the old prompt are not reused.
pub const PROMPT_VERSION: u32 = 1;

const SYSTEM_PROMPT: &str = "Ты фильтр лидов для компании. Тебе дают сообщение из группового \
чата Telegram. Лид — это человек, который сам ищет или заказывает услугу или товар сейчас \
(просит контакт, спрашивает, кто сделает, описывает задачу). Не лид: реклама исполнителей и \
продавцов (даже в форме вопроса), спам, вакансии, поиск работы, болтовня, вопросы без намерения \
купить. Ответь только JSON: {\"relevant\": true|false, \"score\": 0..1, \"reason\": \"одна строка \
по-русски\", \"category\": \"request|offer_ad|spam|offtopic\"}.";

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum LlmAuth {
    /// `Authorization: Bearer <token>` (OpenAI, vLLM, Ollama, an IAM token).
    Bearer(String),
    /// `Authorization: Api-Key <key>` (Yandex AI Studio).
    ApiKey(String),
}

impl std::fmt::Debug for LlmAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            LlmAuth::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
        }
    }
}

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// E.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    pub auth: LlmAuth,
    /// Per request (the spec's 20 s by default).
    pub timeout: Duration,
    /// Retries after a 429 or 5xx.
    pub retries: u32,
    /// The longest `Retry-After` honoured; longer ones are given up on.
    pub max_retry_wait: Duration,
    /// Sent with every request, e.g. Yandex's `x-folder-id` or `x-data-logging-enabled: false`.
    pub extra_headers: Vec<(String, String)>,
    /// A PEM root certificate trusted besides the usual ones (GigaChat's Russian Trusted Root
    /// CA, a self-hosted server's own CA); verification stays on.
    pub extra_root_ca_pem: Option<Vec<u8>>,
}

impl LlmConfig {
    pub fn new(base_url: &str, model: &str, auth: LlmAuth) -> LlmConfig {
        LlmConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            auth,
            timeout: Duration::from_secs(20),
            retries: 2,
            max_retry_wait: Duration::from_secs(10),
            extra_headers: Vec::new(),
            extra_root_ca_pem: None,
        }
    }
}

/// Why the LLM gave no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM endpoint cannot be reached: {0}")]
    Unreachable(String),
    #[error("the LLM endpoint did not answer within {0} ms")]
    Timeout(u64),
    #[error("the LLM endpoint refused the credentials (HTTP {0}): check the key")]
    Unauthorized(u16),
    #[error("the LLM endpoint is rate limiting (HTTP 429) after {0} retries")]
    RateLimited(u32),
    #[error("the LLM endpoint failed (HTTP {status}): {message}")]
    Status { status: u16, message: String },
    #[error("the LLM answered something that is not a verdict: {0}")]
    Nonsense(String),
    #[error("this month's LLM budget of {0} calls is used up")]
    BudgetExhausted(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    JsonSchema,
    JsonObject,
    Prompt,
}

/// A thin OpenAI-compatible client for lead verdicts.
pub struct LlmClient {
    config: LlmConfig,
    http: reqwest::Client,
    mode: Mutex<Mode>,
}

impl LlmClient {
    pub fn new(config: LlmConfig) -> Result<LlmClient, LlmError> {
        let mut builder = reqwest::Client::builder().timeout(config.timeout);
        if let Some(pem) = &config.extra_root_ca_pem {
            let refused = |why: String| {
                LlmError::Unreachable(format!("the extra root CA cannot be used: {why}"))
            };
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| refused(e.to_string()))?;
            if certificates.is_empty() {
                return Err(refused(
                    "no «-----BEGIN CERTIFICATE-----» block in it (give the CA in PEM)".into(),
                ));
            }
            for ca in certificates {
                builder = builder.add_root_certificate(ca);
            }
        }
        let http = builder
            .build()
            .map_err(|e| LlmError::Unreachable(e.to_string()))?;
        Ok(LlmClient {
            config,
            http,
            mode: Mutex::new(Mode::JsonSchema),
        })
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The LLM's verdict on one message.
    pub async fn judge(&self, text: &str) -> Result<Verdict, LlmError> {
        let mut attempt = 0;
        loop {
            let mode = self.mode();
            match self.once(text, mode).await {
                Err(Failure::FormatRefused) => {
                    let next = match mode {
                        Mode::JsonSchema => Mode::JsonObject,
                        Mode::JsonObject | Mode::Prompt => Mode::Prompt,
                    };
                    if next == mode {
                        return Err(LlmError::Status {
                            status: 400,
                            message: "the request was refused".into(),
                        });
                    }
                    *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = next;
                }
                Err(Failure::Retry { wait, error }) => {
                    if attempt >= self.config.retries || wait > self.config.max_retry_wait {
                        return Err(match error {
                            LlmError::Status { status: 429, .. } => LlmError::RateLimited(attempt),
                            other => other,
                        });
                    }
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(Failure::Final(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    async fn once(&self, text: &str, mode: Mode) -> Result<Verdict, Failure> {
        let mut body = json!({
            "model": self.config.model,
            "temperature": 0,
            "max_tokens": 150,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": text},
            ],
        });
        match mode {
            Mode::JsonSchema => body["response_format"] = schema(),
            Mode::JsonObject => body["response_format"] = json!({"type": "json_object"}),
            Mode::Prompt => {}
        }
        let auth = match &self.config.auth {
            LlmAuth::Bearer(t) => format!("Bearer {t}"),
            LlmAuth::ApiKey(k) => format!("Api-Key {k}"),
        };
        let url = format!("{}/chat/completions", self.config.base_url);
        let mut request = self.http.post(&url).header("authorization", auth);
        for (name, value) in &self.config.extra_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.json(&body).send().await.map_err(|e| {
            Failure::Final(if e.is_timeout() {
                LlmError::Timeout(self.config.timeout.as_millis() as u64)
            } else {
                LlmError::Unreachable(e.to_string())
            })
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let message = answer
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match status {
            200..=299 => {}
            401 | 403 => return Err(Failure::Final(LlmError::Unauthorized(status))),
            400 if mode != Mode::Prompt
                && (message.contains("response_format") || message.contains("json_schema")) =>
            {
                return Err(Failure::FormatRefused)
            }
            429 | 500..=599 => {
                let backoff = Duration::from_millis(200);
                return Err(Failure::Retry {
                    wait: retry_after.map_or(backoff, Duration::from_secs),
                    error: LlmError::Status { status, message },
                });
            }
            _ => return Err(Failure::Final(LlmError::Status { status, message })),
        }
        let content = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .unwrap_or("");
        parse_verdict(content).map_err(Failure::Final)
    }
}

enum Failure {
    FormatRefused,
    Retry { wait: Duration, error: LlmError },
    Final(LlmError),
}

fn schema() -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "lead_verdict", "strict": true,
        "schema": {"type": "object", "additionalProperties": false,
            "required": ["relevant", "score", "reason", "category"],
            "properties": {"relevant": {"type": "boolean"}, "score": {"type": "number"},
                "reason": {"type": "string"},
                "category": {"type": "string", "enum": ["request", "offer_ad", "spam", "offtopic"]}}}}})
}

/// A verdict out of a model's content: plain JSON, a fenced block, or JSON inside prose.
pub fn parse_verdict(content: &str) -> Result<Verdict, LlmError> {
    let nonsense = || {
        let mut shown: String = content.chars().take(80).collect();
        if content.chars().count() > 80 {
            shown.push('…');
        }
        LlmError::Nonsense(shown)
    };
    let (Some(start), Some(end)) = (content.find('{'), content.rfind('}')) else {
        return Err(nonsense());
    };
    if end < start {
        return Err(nonsense());
    }
    let v: Value = serde_json::from_str(&content[start..=end]).map_err(|_| nonsense())?;
    let lead = v
        .get("relevant")
        .and_then(Value::as_bool)
        .ok_or_else(nonsense)?;
    let score = v
        .get("score")
        .and_then(Value::as_f64)
        .unwrap_or(if lead { 1.0 } else { 0.0 })
        .clamp(0.0, 1.0) as f32;
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    Ok(Verdict {
        lead,
        score,
        reason: if reason.is_empty() {
            "LLM: без пояснения".into()
        } else {
            format!("LLM: {reason}")
        },
        backend: "llm",
    })
}

/// The text a cache key is made of: folded (lower case, ё → е), words only, single spaces.
pub fn normalised(text: &str) -> String {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the cascade decided, and why the LLM was not (or could not be) used.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeVerdict {
    pub verdict: Verdict,
    /// The LLM's failure or the exhausted budget, when the embedded verdict stood because of it.
    pub llm_error: Option<LlmError>,
    /// The verdict came from the cache (no call made).
    pub cached: bool,
}

struct Budget {
    month: String,
    used: u32,
}

/// Embedded model first, the LLM only in the uncertain band.
pub struct Cascade {
    local: LeadModel,
    llm: LlmClient,
    /// Below: the embedded "not a lead" stands.
    pub low: f32,
    /// At or above: the embedded "lead" stands.
    pub high: f32,
    monthly_calls: u32,
    budget: Mutex<Budget>,
    cache: Mutex<HashMap<String, Verdict>>,
}

impl Cascade {
    /// A cascade with the spec's band 0.3–0.7 and `monthly_calls` LLM calls a month.
    pub fn new(local: LeadModel, llm: LlmClient, monthly_calls: u32) -> Cascade {
        Cascade {
            local,
            llm,
            low: 0.3,
            high: 0.7,
            monthly_calls,
            budget: Mutex::new(Budget {
                month: String::new(),
                used: 0,
            }),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// LLM calls made this month (as of the last call's month).
    pub fn calls_this_month(&self) -> u32 {
        self.budget.lock().unwrap_or_else(|p| p.into_inner()).used
    }

    /// The verdict on a message; `month` (e.g. "2026-12") is the budget's period.
    pub async fn classify(&self, text: &str, month: &str) -> CascadeVerdict {
        let local = self.local.verdict(text);
        let stands = |llm_error| CascadeVerdict {
            verdict: local.clone(),
            llm_error,
            cached: false,
        };
        if local.score < self.low || local.score >= self.high {
            return stands(None);
        }
        let key = self.key(text);
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return CascadeVerdict {
                verdict: v.clone(),
                llm_error: None,
                cached: true,
            };
        }
        {
            let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            if budget.month != month {
                budget.month = month.to_owned();
                budget.used = 0;
            }
            if budget.used >= self.monthly_calls {
                return stands(Some(LlmError::BudgetExhausted(self.monthly_calls)));
            }
            budget.used += 1;
        }
        match self.llm.judge(text).await {
            Ok(v) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, v.clone());
                CascadeVerdict {
                    verdict: v,
                    llm_error: None,
                    cached: false,
                }
            }
            Err(e) => stands(Some(e)),
        }
    }

    /// `sha256(model, prompt version, normalised text)` in hex.
    fn key(&self, text: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.llm.config.model.as_bytes());
        h.update([0]);
        h.update(PROMPT_VERSION.to_le_bytes());
        h.update(normalised(text).as_bytes());
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_from_plain_fenced_and_wrapped_json() {
        let plain = parse_verdict(
            r#"{"relevant": true, "score": 0.8, "reason": "ищет юриста", "category": "request"}"#,
        )
        .expect("plain");
        assert!(plain.lead && (plain.score - 0.8).abs() < 1e-6);
        assert_eq!(plain.reason, "LLM: ищет юриста");
        assert_eq!(plain.backend, "llm");
        let fenced = parse_verdict(
            "Ответ:\n```json\n{\"relevant\": false, \"score\": 7, \"reason\": \"реклама\"}\n```",
        )
        .expect("fenced");
        assert!(!fenced.lead);
        assert_eq!(fenced.score, 1.0, "a score out of range is clamped");
        assert!(matches!(
            parse_verdict("не знаю"),
            Err(LlmError::Nonsense(_))
        ));
        assert!(matches!(
            parse_verdict(r#"{"score": 0.5}"#),
            Err(LlmError::Nonsense(_))
        ));
        assert!(matches!(parse_verdict("} {"), Err(LlmError::Nonsense(_))));
    }

    #[test]
    fn texts_that_differ_in_case_yo_and_punctuation_share_a_cache_key() {
        assert_eq!(
            normalised("Нужен  сантехник!!! Ёлки,  срочно"),
            normalised("нужен сантехник — елки срочно")
        );
        assert_eq!(
            format!("{:?}", LlmAuth::ApiKey("secret".into())),
            "ApiKey(<redacted>)"
        );
    }
}
