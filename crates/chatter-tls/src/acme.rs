//! Certificates from an ACME CA (Let's Encrypt by default) through `instant-acme`, shared by
//! every node of the database. Each node looks at the stored certificate every few seconds and
//! serves it as soon as it changes; when it is missing or due for renewal (30 days before
//! expiry, or after two thirds of a short lifetime) one node, holding the lease, orders: HTTP-01
//! answers go into the database so the CA may reach any node's plain listener, the new key is
//! stored encrypted with the master key. A failed order is recorded with the CA's reason (the
//! health page shows it), logged, and retried with a growing pause; the certificate already
//! served stays until it is replaced.

use crate::cert::{self, LoadedCert};
use crate::slot::CertSlot;
use crate::TlsError;
use chatter_core::Core;
use chatter_store::{leases, tls as store};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How often a node looks at the stored certificate.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// How long the ordering node holds the lease; another node takes over after it if that one
/// died mid-order.
const ORDER_LEASE_MS: i64 = 5 * 60_000;
/// How long a stored HTTP-01 answer is kept.
const CHALLENGE_TTL_MS: i64 = 60 * 60_000;
/// The pause after the first failed order, doubled after each further one up to the cap. Five
/// minutes keeps well inside Let's Encrypt's five failed validations per name and hour.
const FIRST_RETRY_MS: i64 = 5 * 60_000;
const MAX_RETRY_MS: i64 = 12 * 3_600_000;

/// `tls.acme` in the configuration.
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    pub domains: Vec<String>,
    pub email: String,
    pub directory: String,
    /// An extra root the ACME server's own HTTPS is signed by (a test CA such as Pebble's).
    pub ca_pem: Option<PathBuf>,
    /// Renew this many days before expiry (or after two thirds of a shorter lifetime).
    pub renew_before_days: u32,
}

impl AcmeConfig {
    /// The stored row's name: the sorted domains, comma-separated.
    pub fn name(&self) -> String {
        let mut d: Vec<String> = self.domains.iter().map(|d| d.to_lowercase()).collect();
        d.sort();
        d.dedup();
        d.join(",")
    }
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal.
pub fn renew_at(not_before: i64, not_after: i64, renew_before_days: u32) -> i64 {
    let before = i64::from(renew_before_days) * 86_400_000;
    let third = (not_after - not_before).max(0) / 3;
    not_after - before.min(third)
}

/// The answer to `/.well-known/acme-challenge/<token>`, if one is stored.
pub async fn challenge_answer(core: &Core, token: &str) -> Option<String> {
    match store::find_challenge(&core.db, token, core.now()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot read an ACME challenge answer");
            None
        }
    }
}

/// One node's ACME duty: keep `slot` on the stored certificate, order when due.
pub struct Acme {
    core: Core,
    cfg: AcmeConfig,
    name: String,
    slot: Arc<CertSlot>,
    http: reqwest::Client,
}

impl Acme {
    /// Checks the configuration that can be checked without the CA (the extra root).
    pub fn new(core: Core, cfg: AcmeConfig, slot: Arc<CertSlot>) -> Result<Acme, TlsError> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("chatter/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = &cfg.ca_pem {
            let pem = std::fs::read(p).map_err(|e| {
                TlsError::Invalid(format!(
                    "tls.acme.ca_pem {}: cannot read it ({e})",
                    p.display()
                ))
            })?;
            let root = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                TlsError::Invalid(format!(
                    "tls.acme.ca_pem {}: not a PEM certificate ({e})",
                    p.display()
                ))
            })?;
            http = http.add_root_certificate(root);
        }
        let http = http
            .build()
            .map_err(|e| TlsError::Invalid(format!("ACME HTTP client: {e}")))?;
        Ok(Acme {
            name: cfg.name(),
            core,
            cfg,
            slot,
            http,
        })
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::error!(error = %e, "cannot look at the stored TLS certificate");
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn tick(&self) -> Result<(), chatter_store::StoreError> {
        let row = store::find_certificate(&self.core.db, &self.name).await?;
        if let Some(r) = &row {
            self.serve_stored(r);
        }
        if !self.due(row.as_ref()) {
            return Ok(());
        }
        let (now, node) = (self.core.now(), self.core.node_id.clone());
        let lease = format!("acme:{}", self.name);
        if !leases::acquire(&self.core.db, &lease, &node, now, ORDER_LEASE_MS).await? {
            return Ok(());
        }
        // Another node may have finished an order just before this one took the lease.
        let row = store::find_certificate(&self.core.db, &self.name).await?;
        if self.due(row.as_ref()) {
            let failures = row.as_ref().map_or(0, |r| r.failures);
            self.order_and_store(failures).await?;
        }
        leases::release(&self.core.db, &lease, &node).await?;
        Ok(())
    }

    /// Whether an order is due now: no certificate or renewal time reached, and not inside the
    /// pause after a failure.
    fn due(&self, row: Option<&store::CertificateRow>) -> bool {
        let now = self.core.now();
        let Some(r) = row else { return true };
        let renewal = match (r.cert_pem.as_ref(), r.not_before, r.not_after) {
            (Some(_), Some(nb), Some(na)) => now >= renew_at(nb, na, self.cfg.renew_before_days),
            _ => true,
        };
        renewal && now >= r.next_attempt_at
    }

    /// Puts the stored certificate in the slot if it is not the one served already.
    fn serve_stored(&self, r: &store::CertificateRow) {
        let (Some(c), Some(k), Some(serial)) = (&r.cert_pem, &r.key_pem, &r.serial) else {
            return;
        };
        if self.slot.serial().as_deref() == Some(serial.as_str()) {
            return;
        }
        let loaded = self
            .core
            .secrets
            .decrypt(k)
            .map_err(|e| TlsError::Invalid(format!("the stored certificate's key: {e}")))
            .and_then(|key| {
                cert::from_pem(
                    c.as_bytes(),
                    key.expose().as_bytes(),
                    "the stored certificate",
                    "its key",
                )
            });
        match loaded {
            Ok(l) => {
                self.slot.set(&l, self.core.now());
                tracing::info!(
                    names = ?l.names,
                    serial = %l.serial,
                    not_after = %crate::fmt_ms(l.not_after),
                    "serving the ACME certificate"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the stored ACME certificate");
                self.slot.problem(e.to_string(), self.core.now());
            }
        }
    }

    async fn order_and_store(&self, failures: i32) -> Result<(), chatter_store::StoreError> {
        let now = self.core.now();
        tracing::info!(domains = %self.name, directory = %self.cfg.directory, "ordering a TLS certificate by ACME");
        match self.order().await {
            Ok((loaded, cert_pem, key_pem)) => {
                let renew = renew_at(
                    loaded.not_before,
                    loaded.not_after,
                    self.cfg.renew_before_days,
                );
                store::update_issued(
                    &self.core.db,
                    &self.name,
                    &store::Issued {
                        cert_pem: &cert_pem,
                        key_pem_encrypted: &self.core.secrets.encrypt(&key_pem),
                        not_before: loaded.not_before,
                        not_after: loaded.not_after,
                        serial: &loaded.serial,
                        node: &self.core.node_id,
                        renew_at: renew,
                    },
                    self.core.now(),
                )
                .await?;
                tracing::info!(
                    domains = %self.name,
                    serial = %loaded.serial,
                    not_after = %crate::fmt_ms(loaded.not_after),
                    renew_at = %crate::fmt_ms(renew),
                    seconds = (self.core.now() - now) as f64 / 1000.0,
                    "TLS certificate issued by ACME"
                );
                self.slot.set(&loaded, self.core.now());
            }
            Err(reason) => {
                let pause = (FIRST_RETRY_MS << failures.clamp(0, 12)).min(MAX_RETRY_MS);
                let next = self.core.now() + pause;
                let kept = match self.slot.status().and_then(|s| s.current) {
                    Some(c) => format!(
                        "the certificate served now stays until {}",
                        crate::fmt_ms(c.not_after)
                    ),
                    None => "no certificate is served until an order succeeds".into(),
                };
                let msg = format!(
                    "ACME order for {} failed: {reason}; {kept}; next attempt at {}",
                    self.name,
                    crate::fmt_ms(next)
                );
                tracing::error!("{msg}");
                self.slot.problem(msg.clone(), self.core.now());
                store::update_failed(&self.core.db, &self.name, &msg, next, self.core.now())
                    .await?;
            }
        }
        Ok(())
    }

    /// One order from account to certificate: `(checked certificate, chain PEM, key PEM)`.
    async fn order(&self) -> Result<(LoadedCert, String, String), String> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .cfg
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = match account.new_order(&NewOrder::new(&ids)).await {
            Ok(o) => o,
            Err(e) => return Err(self.refused("refused the order", &e)),
        };
        let mut tokens = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| self.refused("did not give the authorization", &e))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let who = a.identifier().to_string();
            let mut ch = a.challenge(ChallengeType::Http01).ok_or_else(|| {
                format!(
                    "the CA offers no HTTP-01 challenge for {who}, the only kind Chatter answers"
                )
            })?;
            let key_auth = ch.key_authorization();
            let token = ch.token.clone();
            store::insert_challenge(
                &self.core.db,
                &token,
                key_auth.as_str(),
                self.core.now() + CHALLENGE_TTL_MS,
                self.core.now(),
            )
            .await
            .map_err(|e| format!("cannot store the challenge answer: {e}"))?;
            tokens.push(token);
            ch.set_ready()
                .await
                .map_err(|e| self.refused("refused the challenge", &e))?;
        }
        let retries = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retries).await;
        if !matches!(status, Ok(OrderStatus::Ready)) {
            // The challenges say best what went wrong; the order's own error otherwise.
            let why = self
                .why_invalid(&mut order)
                .await
                .unwrap_or_else(|| match status {
                    Err(e) => self.refused("did not validate the order", &e),
                    Ok(s) => format!("the CA left the order {s:?} without saying why"),
                });
            self.forget(&tokens).await;
            return Err(why);
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| self.refused("refused to finalize the order", &e))?;
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| self.refused("did not deliver the certificate", &e))?;
        self.forget(&tokens).await;
        let loaded = cert::from_pem(
            chain.as_bytes(),
            key_pem.as_bytes(),
            "the CA's certificate",
            "its key",
        )
        .map_err(|e| e.to_string())?;
        Ok((loaded, chain, key_pem))
    }

    /// Why an order failed, from its authorizations' challenge errors (if they say).
    async fn why_invalid(&self, order: &mut instant_acme::Order) -> Option<String> {
        let mut reasons = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            let _ = a.refresh().await;
            let who = a.identifier().to_string();
            for c in &a.challenges {
                if let Some(p) = &c.error {
                    reasons.push(format!(
                        "the CA could not validate {who} by HTTP-01: {} — check that http://{who}/ \
                         (port 80) reaches this server's tls.http_bind listener",
                        p.detail.as_deref().unwrap_or("no detail given")
                    ));
                }
            }
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    fn refused(&self, what: &str, e: &instant_acme::Error) -> String {
        format!(
            "the ACME server at {} {what}: {}",
            self.cfg.directory,
            chain(e)
        )
    }

    async fn forget(&self, tokens: &[String]) {
        for t in tokens {
            let _ = store::delete_challenge(&self.core.db, t).await;
        }
    }

    /// The stored account for this directory, or a new one (stored encrypted).
    async fn account(&self) -> Result<Account, String> {
        let dir = &self.cfg.directory;
        let stored = store::find_account(&self.core.db, dir)
            .await
            .map_err(|e| format!("cannot read the ACME account: {e}"))?;
        if let Some((_, enc)) = stored {
            let creds = self
                .core
                .secrets
                .decrypt(&enc)
                .map_err(|e| format!("the stored ACME account: {e}"))
                .and_then(|p| {
                    serde_json::from_str::<AccountCredentials>(p.expose())
                        .map_err(|e| format!("the stored ACME account is damaged: {e}"))
                })?;
            match Account::builder_with_http(Box::new(transport::Reqwest(self.http.clone())))
                .from_credentials(creds)
                .await
            {
                Ok(a) => return Ok(a),
                Err(e) => {
                    // A CA that forgot the account (a test CA restarted): make a new one.
                    tracing::warn!(error = %e, directory = %dir, "the stored ACME account cannot be used; creating a new one");
                    let _ = store::delete_account(&self.core.db, dir).await;
                }
            }
        }
        let contact = format!("mailto:{}", self.cfg.email);
        let (account, creds) =
            Account::builder_with_http(Box::new(transport::Reqwest(self.http.clone())))
                .create(
                    &NewAccount {
                        contact: &[&contact],
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    dir.clone(),
                    None,
                )
                .await
                .map_err(|e| self.refused("refused to create the account", &e))?;
        let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
        store::upsert_account(
            &self.core.db,
            dir,
            &self.cfg.email,
            &self.core.secrets.encrypt(&json),
            self.core.now(),
        )
        .await
        .map_err(|e| format!("cannot store the ACME account: {e}"))?;
        tracing::info!(directory = %dir, email = %self.cfg.email, "ACME account created");
        Ok(account)
    }
}

/// An error with its causes, `outer: inner: innermost` (reqwest hides the reason in them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

mod transport {
    //! instant-acme's requests through the reqwest client the rest of Chatter uses (one HTTP
    //! and TLS stack, and `tls.acme.ca_pem` for a test CA).

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
    use std::future::Future;
    use std::pin::Pin;

    pub struct Reqwest(pub reqwest::Client);

    impl HttpClient for Reqwest {
        fn request(
            &self,
            req: http::Request<BodyWrapper<Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
            let client = self.0.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let body = match body.collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(never) => match never {},
                };
                let resp = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| Error::Other(Box::new(e)))?;
                let resp: http::Response<reqwest::Body> = resp.into();
                Ok(BytesResponse::from(resp))
            })
        }
    }
}

/// What the health page shows of an ACME certificate every node shares.
#[derive(Clone, Debug)]
pub struct Shared {
    pub name: String,
    pub not_after: Option<i64>,
    pub serial: Option<String>,
    pub issued_at: Option<i64>,
    pub issued_by_node: Option<String>,
    /// The last failed order's message and when it was made.
    pub error: Option<(i64, String)>,
    /// The next order (renewal when due, or retry after a failure).
    pub next_attempt_at: i64,
}

/// The stored ACME certificates (normally one), for the health page.
pub async fn shared(core: &Core) -> Result<Vec<Shared>, chatter_store::StoreError> {
    Ok(store::list_certificates(&core.db)
        .await?
        .into_iter()
        .map(|r| Shared {
            error: r.error.map(|e| (r.attempted_at.unwrap_or(r.updated_at), e)),
            name: r.name,
            not_after: r.not_after,
            serial: r.serial,
            issued_at: r.issued_at,
            issued_by_node: r.issued_by_node,
            next_attempt_at: r.next_attempt_at,
        })
        .collect())
}
