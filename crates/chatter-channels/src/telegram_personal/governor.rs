//! The account-health governor: a `TelegramGateway` around the real one that every account's
//! calls go through (`gateway()` returns only governed gateways, so no caller can bypass it).
//! Per account it keeps token buckets per kind of call — about one request a second overall,
//! at most 20 history reads and 20 sends a minute — and obeys Telegram: after `FLOOD_WAIT_X`
//! that kind of call is refused here until the wait is over, without asking Telegram again;
//! after `PEER_FLOOD` sends stop for 24 hours. A refusal is `FloodWait(seconds)` (core waits
//! and tries again: a send job is rescheduled, so the wait survives a restart) or `PeerFlood`.
//! Login calls have no account yet and are left to Telegram's own limits.

use super::{
    Account, ApiCredentials, Dialog, GatewayError, Me, OutFile, Session, SignIn, TelegramGateway,
    TgMessage, Updates,
};
use crate::Download;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The kinds of call with a quota of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Method {
    /// Reads of the chat list and of history.
    History,
    /// Texts and files sent.
    Send,
    /// Everything else (the session check, updates, downloads, read marks).
    Other,
}

/// A bucket of `capacity` tokens refilled at `per_minute` a minute.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    capacity: f64,
    per_minute: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: f64, per_minute: f64, now: Instant) -> Self {
        Bucket {
            capacity,
            per_minute,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let minutes = now.saturating_duration_since(self.at).as_secs_f64() / 60.0;
        self.tokens = (self.tokens + minutes * self.per_minute).min(self.capacity);
        self.at = now;
    }

    /// Seconds until a token is there (0: one is).
    fn wait_secs(&mut self, now: Instant) -> u64 {
        self.refill(now);
        if self.tokens >= 1.0 {
            return 0;
        }
        ((1.0 - self.tokens) * 60.0 / self.per_minute).ceil() as u64
    }
}

/// One account's limits and what Telegram told it.
#[derive(Debug)]
pub(super) struct Health {
    overall: Bucket,
    history: Bucket,
    send: Bucket,
    /// Until when each kind of call waits (FLOOD_WAIT).
    waits: HashMap<Method, Instant>,
    /// Until when sends stay stopped (PEER_FLOOD).
    peer_flood_until: Option<Instant>,
}

/// How long sends stop after `PEER_FLOOD`.
const PEER_FLOOD_PAUSE: Duration = Duration::from_secs(24 * 3600);

impl Health {
    pub(super) fn new(now: Instant) -> Self {
        Health {
            // About one request a second, a few at once.
            overall: Bucket::new(5.0, 60.0, now),
            history: Bucket::new(5.0, 20.0, now),
            send: Bucket::new(5.0, 20.0, now),
            waits: HashMap::new(),
            peer_flood_until: None,
        }
    }

    /// Takes a token for a call of `method` now, or says why not.
    pub(super) fn admit(&mut self, method: Method, now: Instant) -> Result<(), GatewayError> {
        if method == Method::Send && self.peer_flood_until.is_some_and(|t| t > now) {
            return Err(GatewayError::PeerFlood);
        }
        if let Some(until) = self.waits.get(&method).filter(|t| **t > now) {
            let secs = until.saturating_duration_since(now).as_secs_f64().ceil() as u64;
            return Err(GatewayError::FloodWait(secs.max(1)));
        }
        let own = match method {
            Method::History => Some(&mut self.history),
            Method::Send => Some(&mut self.send),
            Method::Other => None,
        };
        let wait = own
            .map_or(0, |b| b.wait_secs(now))
            .max(self.overall.wait_secs(now));
        if wait > 0 {
            return Err(GatewayError::FloodWait(wait));
        }
        self.overall.tokens -= 1.0;
        match method {
            Method::History => self.history.tokens -= 1.0,
            Method::Send => self.send.tokens -= 1.0,
            Method::Other => {}
        }
        Ok(())
    }

    /// Remembers what Telegram answered a call of `method`.
    pub(super) fn learn(&mut self, method: Method, e: &GatewayError, now: Instant) {
        match e {
            GatewayError::FloodWait(secs) => {
                self.waits.insert(method, now + Duration::from_secs(*secs));
            }
            GatewayError::PeerFlood => self.peer_flood_until = Some(now + PEER_FLOOD_PAUSE),
            _ => {}
        }
    }
}

/// Every account's health in this process, by api_id and session.
type Registry = Mutex<HashMap<(i32, String), Arc<Mutex<Health>>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

fn health_of(account: &Account) -> Arc<Mutex<Health>> {
    let mut all = registry().lock().unwrap_or_else(PoisonError::into_inner);
    all.entry((account.api.api_id, account.session.0.clone()))
        .or_insert_with(|| Arc::new(Mutex::new(Health::new(Instant::now()))))
        .clone()
}

/// `inner` with every account call governed.
pub(super) struct Governed {
    pub(super) inner: Arc<dyn TelegramGateway>,
}

impl Governed {
    async fn run<T, F>(&self, account: &Account, method: Method, call: F) -> Result<T, GatewayError>
    where
        F: std::future::Future<Output = Result<T, GatewayError>>,
    {
        let health = health_of(account);
        health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(method, Instant::now())?;
        let r = call.await;
        if let Err(e) = &r {
            health
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .learn(method, e, Instant::now());
        }
        r
    }
}

#[async_trait::async_trait]
impl TelegramGateway for Governed {
    async fn send_code(&self, api: &ApiCredentials, phone: &str) -> Result<String, GatewayError> {
        self.inner.send_code(api, phone).await
    }

    async fn sign_in(
        &self,
        api: &ApiCredentials,
        phone: &str,
        token: &str,
        code: &str,
    ) -> Result<SignIn, GatewayError> {
        self.inner.sign_in(api, phone, token, code).await
    }

    async fn check_password(
        &self,
        api: &ApiCredentials,
        token: &str,
        password: &str,
    ) -> Result<(Me, Session), GatewayError> {
        self.inner.check_password(api, token, password).await
    }

    async fn log_out(&self, account: &Account) -> Result<(), GatewayError> {
        self.run(account, Method::Other, self.inner.log_out(account))
            .await
    }

    async fn get_me(&self, account: &Account) -> Result<Me, GatewayError> {
        self.run(account, Method::Other, self.inner.get_me(account))
            .await
    }

    async fn dialogs(&self, account: &Account) -> Result<Vec<Dialog>, GatewayError> {
        self.run(account, Method::History, self.inner.dialogs(account))
            .await
    }

    async fn history_since(
        &self,
        account: &Account,
        peer: i64,
        since_id: i64,
    ) -> Result<Vec<TgMessage>, GatewayError> {
        let call = self.inner.history_since(account, peer, since_id);
        self.run(account, Method::History, call).await
    }

    async fn send_text(
        &self,
        account: &Account,
        peer: i64,
        text: &str,
        reply_to: Option<i64>,
        random_id: i64,
    ) -> Result<i64, GatewayError> {
        let call = self
            .inner
            .send_text(account, peer, text, reply_to, random_id);
        self.run(account, Method::Send, call).await
    }

    async fn send_file(
        &self,
        account: &Account,
        peer: i64,
        file: OutFile<'_>,
        caption: Option<&str>,
        random_id: i64,
    ) -> Result<i64, GatewayError> {
        let call = self
            .inner
            .send_file(account, peer, file, caption, random_id);
        self.run(account, Method::Send, call).await
    }

    async fn download_media(
        &self,
        account: &Account,
        media_ref: &str,
    ) -> Result<Download, GatewayError> {
        let call = self.inner.download_media(account, media_ref);
        self.run(account, Method::Other, call).await
    }

    async fn mark_read(
        &self,
        account: &Account,
        peer: i64,
        max_id: i64,
    ) -> Result<(), GatewayError> {
        let call = self.inner.mark_read(account, peer, max_id);
        self.run(account, Method::Other, call).await
    }

    async fn updates(
        &self,
        account: &Account,
        state: Option<&str>,
        wait_secs: u32,
    ) -> Result<Updates, GatewayError> {
        let call = self.inner.updates(account, state, wait_secs);
        self.run(account, Method::Other, call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_hold_at_twenty_a_minute_after_a_small_burst() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        let mut sent = 0;
        // One send every second for ten minutes: never more than 20 a minute after the burst.
        let mut per_minute = vec![0u32; 10];
        for s in 0..600u64 {
            let now = t0 + Duration::from_secs(s);
            if h.admit(Method::Send, now).is_ok() {
                sent += 1;
                per_minute[(s / 60) as usize] += 1;
            }
        }
        assert!(
            per_minute.iter().skip(1).all(|n| *n <= 20),
            "{per_minute:?}"
        );
        assert!(per_minute[0] <= 25, "{per_minute:?}");
        assert!(sent >= 190, "the quota is used, not starved: {sent}");
    }

    #[test]
    fn overall_calls_hold_at_about_one_a_second() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        let admitted = (0..100)
            .filter(|i| {
                h.admit(Method::Other, t0 + Duration::from_millis(i * 100))
                    .is_ok()
            })
            .count();
        // Ten seconds of ten tries a second: the burst of 5 and about one a second after it.
        assert!((10..=16).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_flood_wait_is_obeyed_for_that_kind_of_call_only() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        h.learn(Method::Send, &GatewayError::FloodWait(30), t0);
        let at = t0 + Duration::from_secs(10);
        assert_eq!(h.admit(Method::Send, at), Err(GatewayError::FloodWait(20)));
        assert!(h.admit(Method::Other, at).is_ok());
        assert!(h.admit(Method::Send, t0 + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn peer_flood_stops_sends_for_a_day() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        h.learn(Method::Send, &GatewayError::PeerFlood, t0);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            h.admit(Method::Send, t0 + 23 * hour),
            Err(GatewayError::PeerFlood)
        );
        assert!(h.admit(Method::History, t0 + 23 * hour).is_ok());
        assert!(h.admit(Method::Send, t0 + 25 * hour).is_ok());
    }
}
