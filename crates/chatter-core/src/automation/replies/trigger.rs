//! Where auto-replies start: inside the transaction that stores customers' messages, a
//! company with enabled rules gets one `AutoReplyCheck` job per new message (so the check is
//! durable and the webhook is answered without waiting for it). Whether a company has enabled
//! rules is kept a few seconds per process, so companies without rules cost one map lookup.

use super::run::AutoReplyCheck;
use crate::jobs::{BackgroundJob, JobOptions};
use crate::Result;
use chatter_domain::{CompanyId, ConversationId, MessageId};
use chatter_store::entity::auto_reply;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a node trusts its answer to "has this company enabled rules". Saves on this node
/// forget it at once; another node's save is seen within this time.
const FRESH: Duration = Duration::from_secs(10);

static HAS_RULES: LazyLock<Mutex<HashMap<CompanyId, (bool, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Forgets what is known about `company` (its rules changed on this node).
pub(crate) fn forget(company: CompanyId) {
    if let Ok(mut m) = HAS_RULES.lock() {
        m.remove(&company);
    }
}

async fn has_rules(conn: &impl ConnectionTrait, company: CompanyId) -> Result<bool> {
    let known = HAS_RULES
        .lock()
        .ok()
        .and_then(|m| m.get(&company).copied())
        .filter(|(_, at)| at.elapsed() < FRESH);
    if let Some((yes, _)) = known {
        return Ok(yes);
    }
    let yes = auto_reply::Entity::find()
        .filter(auto_reply::Column::CompanyId.eq(company))
        .filter(auto_reply::Column::Enabled.eq(true))
        .select_only()
        .column(auto_reply::Column::Id)
        .into_tuple::<uuid::Uuid>()
        .one(conn)
        .await?
        .is_some();
    if let Ok(mut m) = HAS_RULES.lock() {
        m.insert(company, (yes, Instant::now()));
    }
    Ok(yes)
}

/// Queues the auto-reply check of each new customer message `(company, conversation,
/// message)`, inside the storing transaction, for companies that have enabled rules.
pub async fn after_inbound(
    conn: &impl ConnectionTrait,
    items: &[(CompanyId, ConversationId, MessageId)],
    now: i64,
) -> Result<()> {
    let mut answer: HashMap<CompanyId, bool> = HashMap::new();
    for (company, _, message_id) in items {
        let yes = match answer.get(company) {
            Some(y) => *y,
            None => {
                let y = has_rules(conn, *company).await?;
                answer.insert(*company, y);
                y
            }
        };
        if yes {
            AutoReplyCheck {
                message_id: *message_id,
            }
            .enqueue(conn, JobOptions::at(now).company(company.0))
            .await?;
        }
    }
    Ok(())
}
