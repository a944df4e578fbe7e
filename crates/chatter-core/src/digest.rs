//! The daily e-mail digest of unanswered conversations, for people who asked for it on their
//! profile: open conversations whose customer wrote last. A typed job runs it (queued daily at
//! 07:00 UTC, the next one queued by each run); each person gets at most one digest a day per
//! company — the day is written with a conditional update in the same transaction as the
//! mail's job, so two runs on two nodes cannot both send it.

use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{mailer, Core, Result};
use async_trait::async_trait;
use chatter_domain::ConversationStatus;
use chatter_store::entity::{company, membership, notification_setting, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, TransactionTrait};
use uuid::Uuid;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// When the daily digest goes out (UTC hour).
const HOUR: i64 = 7;
/// The most conversations one digest lists.
const MAX_LISTED: u64 = 50;

fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Makes sure the next digest run is queued. Safe on every start of every node.
pub async fn schedule(core: &Core) -> Result<()> {
    let now = core.now();
    let next = (now / DAY_MS) * DAY_MS + HOUR * 3600 * 1000;
    let next = if next <= now { next + DAY_MS } else { next };
    DailyDigest {}
        .enqueue(
            &core.db,
            JobOptions::at(now).run_at(next).dedup(format!(
                "{}:{}",
                DailyDigest::NAME,
                day_of(next)
            )),
        )
        .await?;
    Ok(())
}

/// Sends today's digests still due; returns how many mails were queued.
pub async fn send_due(core: &Core) -> Result<usize> {
    let now = core.now();
    let today = day_of(now);
    let wanted = notification_setting::Entity::find()
        .filter(notification_setting::Column::Digest.eq(true))
        .filter(
            Condition::any()
                .add(notification_setting::Column::DigestSentOn.is_null())
                .add(notification_setting::Column::DigestSentOn.ne(today.as_str())),
        )
        .all(&core.db)
        .await?;
    let mut sent = 0;
    for s in wanted {
        // Still a member who may read, with an address.
        let Some(m) = membership::Entity::find_by_id((s.company_id, s.user_id))
            .one(&core.db)
            .await?
        else {
            continue;
        };
        if !chatter_domain::Role::parse(&m.role)
            .is_some_and(|r| r.can(chatter_domain::Permission::Read))
        {
            continue;
        }
        let Some(u) = user::Entity::find_by_id(s.user_id).one(&core.db).await? else {
            continue;
        };
        let waiting = unanswered(core, s.company_id).await?;
        if waiting.is_empty() {
            continue;
        }
        let company_name = company::Entity::find_by_id(s.company_id)
            .one(&core.db)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        let ru = u.locale != "en";
        let subject = if ru {
            format!("{company_name}: без ответа — {} (Chatter)", waiting.len())
        } else {
            format!("{company_name}: {} unanswered (Chatter)", waiting.len())
        };
        let mut body = if ru {
            format!(
                "{}, эти разговоры ждут ответа:\n\n",
                mailer::one_line(&u.name)
            )
        } else {
            format!(
                "{}, these conversations wait for an answer:\n\n",
                mailer::one_line(&u.name)
            )
        };
        for (id, who, text) in &waiting {
            body.push_str(&format!(
                "• {} — {}\n  {}/app/inbox/{id}\n",
                mailer::one_line(who),
                mailer::one_line(text),
                core.config.public_url
            ));
        }
        body.push_str(if ru {
            "\nОтключить письмо: профиль → уведомления.\n"
        } else {
            "\nTurn this mail off: profile → notifications.\n"
        });
        let txn = core.db.begin().await?;
        let claimed = notification_setting::Entity::update_many()
            .col_expr(
                notification_setting::Column::DigestSentOn,
                Expr::value(today.clone()),
            )
            .filter(notification_setting::Column::CompanyId.eq(s.company_id))
            .filter(notification_setting::Column::UserId.eq(s.user_id))
            .filter(notification_setting::Column::Digest.eq(true))
            .filter(
                Condition::any()
                    .add(notification_setting::Column::DigestSentOn.is_null())
                    .add(notification_setting::Column::DigestSentOn.ne(today.as_str())),
            )
            .exec(&txn)
            .await?
            .rows_affected;
        if claimed == 1 {
            mailer::enqueue(core, &txn, &u.email, &subject, &body).await?;
            sent += 1;
        }
        txn.commit().await?;
    }
    Ok(sent)
}

/// The company's open conversations whose customer wrote last, oldest wait first: id, who,
/// the last text.
async fn unanswered(core: &Core, company: Uuid) -> Result<Vec<(Uuid, String, String)>> {
    use sea_orm::ConnectionTrait;
    let rows = core
        .db
        .query_all(chatter_store::stmt(
            core.db.get_database_backend(),
            "SELECT c.id AS id, COALESCE(c.title, ct.name) AS who, c.last_text AS last_text \
             FROM conversations c JOIN contacts ct ON ct.id = c.contact_id \
             WHERE c.company_id = $1 AND c.status = $2 \
             AND c.last_in_at > COALESCE(c.last_out_at, 0) \
             ORDER BY c.last_in_at ASC LIMIT $3",
            vec![
                company.into(),
                ConversationStatus::Open.as_str().into(),
                (MAX_LISTED as i64).into(),
            ],
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: Uuid = r.try_get("", "id")?;
        let who: String = r.try_get("", "who")?;
        let text: String = r.try_get("", "last_text")?;
        out.push((id, who, text.chars().take(100).collect()));
    }
    Ok(out)
}

/// The daily digest run; each run queues the next day's.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DailyDigest {}

#[async_trait]
impl BackgroundJob for DailyDigest {
    const NAME: &'static str = "digest_daily";
    const MAX_ATTEMPTS: i32 = 5;

    async fn run(&self, core: &Core, job: &JobMeta) -> std::result::Result<(), JobError> {
        let r = send_due(core).await;
        let now = core.now();
        let next = (now / DAY_MS + 1) * DAY_MS + HOUR * 3600 * 1000;
        let _ = DailyDigest {}
            .enqueue(
                &core.db,
                JobOptions::at(now).run_at(next).dedup(format!(
                    "{}:{}:{}",
                    Self::NAME,
                    day_of(next),
                    job.id
                )),
            )
            .await;
        r.map(|_| ())
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}
