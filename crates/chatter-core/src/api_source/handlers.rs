//! The API source's jobs: the dispatcher's tick and one webhook delivery with retries.

use super::*;

pub(super) fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

/// Follows the event log and creates deliveries (one at a time across all nodes, by its
/// dedup key; it queues itself again while some source has a webhook URL).
#[derive(Serialize, Deserialize)]
pub struct Dispatch {}

#[async_trait]
impl BackgroundJob for Dispatch {
    const NAME: &'static str = "api_webhook_dispatch";
    const MAX_ATTEMPTS: i32 = 1_000_000;

    fn dedup_key(&self) -> Option<String> {
        Some(Self::NAME.to_string())
    }

    async fn run(&self, core: &Core, _job: &JobMeta) -> Result<(), JobError> {
        match dispatch(core).await {
            // Runs again shortly for as long as some source has a webhook URL.
            Ok(true) => Err(JobError::Wait {
                retry_after_ms: DISPATCH_EVERY_MS,
                message: "following the event log".into(),
            }),
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatch failed; will run again");
                Err(JobError::Wait {
                    retry_after_ms: 1_000,
                    message: e.to_string(),
                })
            }
        }
    }
}

/// Posts one webhook delivery (one job per delivery, by its dedup key).
#[derive(Serialize, Deserialize)]
pub struct Deliver {
    pub delivery_id: Uuid,
}

/// An error with its causes ("error sending request: … : Connection refused"), never a body.
pub(super) fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// Why a delivery got no answer.
pub(super) enum Failure {
    Refused(egress::Refusal),
    Timeout,
    Connect(String),
}

#[async_trait]
impl BackgroundJob for Deliver {
    const NAME: &'static str = "api_webhook_deliver";
    const MAX_ATTEMPTS: i32 = DELIVERY_ATTEMPTS;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}:{}", Self::NAME, self.delivery_id))
    }

    async fn run(&self, core: &Core, _job: &JobMeta) -> Result<(), JobError> {
        let id = self.delivery_id;
        let Some(d) = delivery::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .map_err(internal)?
        else {
            return Ok(());
        };
        if d.status != PENDING {
            return Ok(());
        }
        // Per conversation, in the order they were made: wait for an earlier one still going.
        if let Some(c) = d.conversation_id {
            let earlier = delivery::Entity::find()
                .filter(delivery::Column::SourceId.eq(d.source_id))
                .filter(delivery::Column::ConversationId.eq(c))
                .filter(delivery::Column::Status.eq(PENDING))
                .filter(delivery::Column::Id.lt(d.id))
                .one(&core.db)
                .await
                .map_err(internal)?;
            if earlier.is_some() {
                return Err(JobError::Wait {
                    retry_after_ms: 250,
                    message: "waiting for an earlier delivery of this conversation".into(),
                });
            }
        }
        let src = source::Entity::find_by_id(d.source_id)
            .one(&core.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("source gone".into()))?;
        let Some(url) = settings_of(&src).webhook_url else {
            return Err(JobError::Permanent("no outgoing webhook URL is set".into()));
        };
        let secret = secret_of(core, &src).map_err(|e| JobError::Permanent(e.to_string()))?;
        let ts = core.now() / 1000;
        // A person typed this URL: only public addresses (a literal IP here, names in the
        // resolver), no redirects; the log keeps the status and timing, never the answer.
        let allow = core.config.allow_private_targets;
        let started = std::time::Instant::now();
        let target = egress::parse(&url).and_then(|u| egress::check_literal(&u, allow).map(|()| u));
        let r = match target {
            Err(refusal) => Err(Failure::Refused(refusal)),
            Ok(target) => core
                .outbound
                .post(target)
                .timeout(std::time::Duration::from_secs(DELIVERY_TIMEOUT_SECS))
                .header("content-type", "application/json")
                .header("x-chatter-timestamp", ts.to_string())
                .header(
                    "x-chatter-signature",
                    sign(&secret, ts, d.payload.as_bytes()),
                )
                .header("x-chatter-event", d.event_type.as_str())
                .header("x-chatter-delivery", d.id.to_string())
                .body(d.payload.clone())
                .send()
                .await
                .map_err(|e| match egress::refusal_in(&e) {
                    Some(r) => Failure::Refused(r),
                    None if e.is_timeout() => Failure::Timeout,
                    None => Failure::Connect(cause_chain(&e.without_url())),
                }),
        };
        let ms = started.elapsed().as_millis();
        let mut refused = false;
        let (code, error) = match r {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16() as i32), None),
            Ok(resp) => {
                let code = resp.status().as_u16();
                (Some(code as i32), Some(format!("HTTP {code} in {ms} ms")))
            }
            Err(Failure::Timeout) => (
                None,
                Some(format!("no answer within {DELIVERY_TIMEOUT_SECS} s")),
            ),
            Err(Failure::Refused(why)) => {
                refused = true;
                (None, Some(why.to_string()))
            }
            Err(Failure::Connect(e)) => (None, Some(format!("cannot connect: {e}"))),
        };
        let now = core.now();
        let txn = core.db.begin().await.map_err(internal)?;
        let mut pending = Pending::default();
        let mut am = d.clone().into_active_model();
        am.attempts = Set(d.attempts + 1);
        am.url = Set(url);
        am.status_code = Set(code);
        am.last_error = Set(error.clone());
        am.updated_at = Set(now);
        if error.is_none() {
            am.status = Set(DELIVERED.into());
            am.delivered_at = Set(Some(now));
        }
        am.update(&txn).await.map_err(internal)?;
        if d.event_type == "message.created" {
            if let Some(mid) = d.message_id {
                match &error {
                    None => {
                        mark_message(
                            &txn,
                            &mut pending,
                            mid.into(),
                            MessageStatus::Sent,
                            None,
                            now,
                        )
                        .await
                    }
                    // Shown on the pending reply while it is retried.
                    Some(e) => message::Entity::update_many()
                        .col_expr(
                            message::Column::Error,
                            Expr::value(format!("retrying: {e}")),
                        )
                        .filter(message::Column::Id.eq(mid))
                        .filter(message::Column::Status.eq(MessageStatus::Pending))
                        .exec(&txn)
                        .await
                        .map(|_| ())
                        .map_err(CoreError::from),
                }
                .map_err(internal)?;
            }
        }
        txn.commit().await.map_err(internal)?;
        core.published(pending);
        match error {
            None => Ok(()),
            // The address will not become public by waiting.
            Some(e) if refused => Err(JobError::Permanent(e)),
            Some(e) => Err(JobError::Transient(e)),
        }
    }

    async fn dead(&self, core: &Core, _job: &JobMeta, reason: &str) {
        let id = self.delivery_id;
        let now = core.now();
        let r: Result<()> = async {
            let txn = core.db.begin().await?;
            let Some(d) = delivery::Entity::find_by_id(id).one(&txn).await? else {
                return Ok(());
            };
            let mut pending = Pending::default();
            if d.event_type == "message.created" {
                if let Some(mid) = d.message_id {
                    mark_message(
                        &txn,
                        &mut pending,
                        mid.into(),
                        MessageStatus::Failed,
                        Some(reason.to_string()),
                        now,
                    )
                    .await?;
                }
            }
            let mut am = d.into_active_model();
            am.status = Set(FAILED.into());
            am.last_error = Set(Some(reason.chars().take(2000).collect()));
            am.updated_at = Set(now);
            am.update(&txn).await?;
            txn.commit().await?;
            core.published(pending);
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, delivery = %id, "cannot record a failed webhook delivery");
        }
    }
}
