//! `FakeGateway`: `TelegramGateway` over the small JSON protocol the loopback fake in
//! `chatter-fakes` (`telegram_personal`) speaks, since a real MTProto server cannot run in tests
//! or the demo. Every call is `POST {base}/{method}` with a JSON body (the session, when one is
//! needed, in `session`); a refusal is a non-2xx answer `{"error":"FLOOD_WAIT_30"}` carrying
//! Telegram's RPC error name, read by `GatewayError::from_rpc`. An update gap answers
//! `{"gap":true}` and is filled through `difference`, as an MTProto client does.

use super::{
    Account, ApiCredentials, Dialog, GatewayError, Me, OutFile, Session, SignIn, TelegramGateway,
    TgMessage, Updates,
};
use crate::common::error_chain;
use crate::Download;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The fake's protocol client of one installation.
#[derive(Clone)]
pub struct FakeGateway {
    http: reqwest::Client,
    base: String,
}

impl FakeGateway {
    /// A client of the gateway at `base`.
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        FakeGateway {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: Value,
    ) -> Result<T, GatewayError> {
        let r = self.raw(method, body).await?;
        r.json::<T>()
            .await
            .map_err(|e| GatewayError::Network(format!("{method}: unreadable answer: {e}")))
    }

    async fn raw(&self, method: &str, body: Value) -> Result<reqwest::Response, GatewayError> {
        let r = self
            .http
            .post(format!("{}/{method}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                GatewayError::Network(format!("{method}: {}", error_chain(&e.without_url())))
            })?;
        refusal(method, r).await
    }
}

/// A 2xx answer as is; otherwise the RPC error it names.
async fn refusal(method: &str, r: reqwest::Response) -> Result<reqwest::Response, GatewayError> {
    let status = r.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(r);
    }
    #[derive(Deserialize)]
    struct Refused {
        error: String,
    }
    if status >= 500 {
        return Err(GatewayError::Network(format!(
            "{method}: gateway answered {status}"
        )));
    }
    match r.json::<Refused>().await {
        Ok(e) => Err(GatewayError::from_rpc(&e.error)),
        Err(_) => Err(GatewayError::Other(format!("{method}: {status}"))),
    }
}

fn api(a: &ApiCredentials) -> Value {
    json!({"api_id": a.api_id, "api_hash": a.api_hash})
}

fn with_session(account: &Account, mut body: Value) -> Value {
    body["session"] = json!(account.session.0);
    body["api_id"] = json!(account.api.api_id);
    body
}

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    me: Option<Me>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    password_needed: bool,
    #[serde(default)]
    hint: Option<String>,
    #[serde(default)]
    password_token: Option<String>,
}

#[derive(Deserialize)]
struct Sent {
    id: i64,
}

#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    gap: bool,
    #[serde(default)]
    messages: Vec<TgMessage>,
    #[serde(default)]
    state: String,
}

#[async_trait::async_trait]
impl TelegramGateway for FakeGateway {
    async fn send_code(&self, a: &ApiCredentials, phone: &str) -> Result<String, GatewayError> {
        #[derive(Deserialize)]
        struct Code {
            phone_code_hash: String,
        }
        let mut body = api(a);
        body["phone"] = json!(phone);
        let c: Code = self.call("auth.sendCode", body).await?;
        Ok(c.phone_code_hash)
    }

    async fn sign_in(
        &self,
        a: &ApiCredentials,
        phone: &str,
        token: &str,
        code: &str,
    ) -> Result<SignIn, GatewayError> {
        let mut body = api(a);
        body["phone"] = json!(phone);
        body["phone_code_hash"] = json!(token);
        body["code"] = json!(code);
        let s: Signed = self.call("auth.signIn", body).await?;
        if s.password_needed {
            let token = s
                .password_token
                .ok_or_else(|| GatewayError::Other("auth.signIn: no password token".into()))?;
            return Ok(SignIn::PasswordNeeded {
                hint: s.hint.filter(|h| !h.is_empty()),
                token,
            });
        }
        match (s.me, s.session) {
            (Some(me), Some(session)) => Ok(SignIn::Done(me, Session(session))),
            _ => Err(GatewayError::Other("auth.signIn: no session".into())),
        }
    }

    async fn check_password(
        &self,
        a: &ApiCredentials,
        token: &str,
        password: &str,
    ) -> Result<(Me, Session), GatewayError> {
        let mut body = api(a);
        body["password_token"] = json!(token);
        body["password"] = json!(password);
        let s: Signed = self.call("auth.checkPassword", body).await?;
        match (s.me, s.session) {
            (Some(me), Some(session)) => Ok((me, Session(session))),
            _ => Err(GatewayError::Other("auth.checkPassword: no session".into())),
        }
    }

    async fn log_out(&self, account: &Account) -> Result<(), GatewayError> {
        self.raw("auth.logOut", with_session(account, json!({})))
            .await
            .map(|_| ())
    }

    async fn get_me(&self, account: &Account) -> Result<Me, GatewayError> {
        self.call("users.getMe", with_session(account, json!({})))
            .await
    }

    async fn dialogs(&self, account: &Account) -> Result<Vec<Dialog>, GatewayError> {
        self.call("messages.getDialogs", with_session(account, json!({})))
            .await
    }

    async fn history_since(
        &self,
        account: &Account,
        peer: i64,
        since_id: i64,
    ) -> Result<Vec<TgMessage>, GatewayError> {
        let body = with_session(account, json!({"peer": peer, "min_id": since_id}));
        self.call("messages.getHistory", body).await
    }

    async fn send_text(
        &self,
        account: &Account,
        peer: i64,
        text: &str,
        reply_to: Option<i64>,
        random_id: i64,
    ) -> Result<i64, GatewayError> {
        let body = with_session(
            account,
            json!({"peer": peer, "text": text, "reply_to": reply_to, "random_id": random_id}),
        );
        let s: Sent = self.call("messages.sendMessage", body).await?;
        Ok(s.id)
    }

    async fn send_file(
        &self,
        account: &Account,
        peer: i64,
        file: OutFile<'_>,
        caption: Option<&str>,
        random_id: i64,
    ) -> Result<i64, GatewayError> {
        let body = with_session(
            account,
            json!({
                "peer": peer,
                "file_name": file.file_name,
                "mime_type": file.mime_type,
                "as_photo": file.as_photo,
                "bytes_hex": hex::encode(file.bytes),
                "caption": caption,
                "random_id": random_id,
            }),
        );
        let s: Sent = self.call("messages.sendMedia", body).await?;
        Ok(s.id)
    }

    async fn download_media(
        &self,
        account: &Account,
        media_ref: &str,
    ) -> Result<Download, GatewayError> {
        let r = self
            .raw(
                "upload.getFile",
                with_session(account, json!({"media_ref": media_ref})),
            )
            .await?;
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mime_type = header("content-type");
        let file_name = header("x-file-name");
        let bytes = r
            .bytes()
            .await
            .map_err(|e| GatewayError::Network(format!("upload.getFile: {e}")))?;
        Ok(Download {
            bytes,
            mime_type,
            file_name,
        })
    }

    async fn mark_read(
        &self,
        account: &Account,
        peer: i64,
        max_id: i64,
    ) -> Result<(), GatewayError> {
        let body = with_session(account, json!({"peer": peer, "max_id": max_id}));
        self.raw("messages.readHistory", body).await.map(|_| ())
    }

    async fn updates(
        &self,
        account: &Account,
        state: Option<&str>,
        wait_secs: u32,
    ) -> Result<Updates, GatewayError> {
        let body = with_session(account, json!({"state": state, "wait": wait_secs}));
        let b: Batch = self.call("updates.get", body).await?;
        if !b.gap {
            return Ok(Updates {
                messages: b.messages,
                state: b.state,
            });
        }
        // A gap: what happened since `state` comes whole from the difference.
        let body = with_session(account, json!({"state": state}));
        let d: Batch = self.call("updates.getDifference", body).await?;
        Ok(Updates {
            messages: d.messages,
            state: d.state,
        })
    }
}
