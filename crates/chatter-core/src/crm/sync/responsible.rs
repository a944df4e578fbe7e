//! One responsible person (issue 15, item 12): the conversation's assignee in Chatter and the
//! responsible of its deal in amoCRM kept the same person, both ways, when the company turns it
//! on. Members and amoCRM users are matched by e-mail (the synced user list), as for "whoever
//! answers first".
//!
//! - Chatter → amoCRM: an assignment queues a `responsible` outbox item in its transaction;
//!   the drain sets the deal's `responsible_user_id` once the deal exists.
//! - amoCRM → Chatter: `CrmResponsiblePull`, under the company's CRM lease, reads the deals
//!   changed most recently (one request) and moves the assignee of every conversation whose
//!   deal got another responsible; it runs every minute while the setting is on, and at once
//!   from "Sync now".
//! - Which side leads decides the one moment both have a say: when a conversation gets its
//!   deal, the deal's responsible becomes the assignee (amoCRM leads), or the assignee becomes
//!   the deal's responsible (Chatter leads).

use super::*;
use crate::crm::settings::RESPONSIBLE_SCOPE;

/// How often amoCRM is asked about changed deals while the setting is on.
pub const PULL_EVERY_MS: i64 = 60_000;
/// Deals read per look (the newest changes first).
const PULL_DEALS: usize = 250;

/// Which side's responsible person wins where they differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponsibleLead {
    /// Not kept in step (the deal's responsible comes from the routing settings only).
    #[default]
    Off,
    /// Both ways; a new deal takes the conversation's assignee.
    Chatter,
    /// Both ways; a new deal's responsible becomes the conversation's assignee.
    Amocrm,
}

impl ResponsibleLead {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponsibleLead::Off => "off",
            ResponsibleLead::Chatter => "chatter",
            ResponsibleLead::Amocrm => "amocrm",
        }
    }

    pub fn parse(s: &str) -> Option<ResponsibleLead> {
        match s {
            "off" => Some(ResponsibleLead::Off),
            "chatter" => Some(ResponsibleLead::Chatter),
            "amocrm" => Some(ResponsibleLead::Amocrm),
            _ => None,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Stored {
    lead: ResponsibleLead,
}

/// The company's setting (off when never set).
pub async fn responsible_lead(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
) -> Result<ResponsibleLead> {
    Ok(crm_settings::load_raw(conn, company_id, RESPONSIBLE_SCOPE)
        .await?
        .and_then(|s| {
            chatter_store::stored_json::read_opt::<Stored>(
                "crm_settings.settings",
                format_args!("{company_id}/{RESPONSIBLE_SCOPE}"),
                Some(&s),
            )
        })
        .unwrap_or_default()
        .lead)
}

/// The setting, for the settings page and the API.
pub async fn get_responsible_lead(core: &Core, actor: &Actor) -> Result<ResponsibleLead> {
    actor.require(Permission::Read)?;
    responsible_lead(&core.db, actor.company_id).await
}

/// Stores the setting; turning it on looks at amoCRM at once.
pub async fn set_responsible_lead(core: &Core, actor: &Actor, lead: ResponsibleLead) -> Result<()> {
    actor.require(Permission::Manage)?;
    crm::get(core, actor).await?.ok_or(CoreError::NotFound)?;
    let now = core.now();
    let json =
        serde_json::to_string(&Stored { lead }).map_err(|e| CoreError::Internal(e.to_string()))?;
    let txn = core.db.begin().await?;
    crm_settings::store_raw(&txn, actor.company_id, RESPONSIBLE_SCOPE, &json, now).await?;
    audit::record(
        &txn,
        actor,
        now,
        "crm.responsible",
        RESPONSIBLE_SCOPE,
        serde_json::json!({ "lead": lead.as_str() }),
    )
    .await?;
    if lead != ResponsibleLead::Off {
        queue_pull(&txn, actor.company_id.uuid(), now, now).await?;
    }
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// "Sync now": look at amoCRM's deals at once when the setting is on.
pub async fn pull_now(core: &Core, company_id: CompanyId) -> Result<()> {
    if responsible_lead(&core.db, company_id).await? == ResponsibleLead::Off {
        return Ok(());
    }
    let now = core.now();
    let key = format!("{}:{company_id}", CrmResponsiblePull::NAME);
    core.db
        .execute(stmt(
            core.db.get_database_backend(),
            "UPDATE jobs SET run_at = $1 WHERE dedup_key = $2 AND status = 'queued'",
            vec![now.into(), key.into()],
        ))
        .await?;
    queue_pull(&core.db, company_id.uuid(), now, now).await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

async fn queue_pull(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    now: i64,
    at: i64,
) -> Result<()> {
    CrmResponsiblePull { company_id }
        .enqueue(
            conn,
            crate::jobs::JobOptions::at(now)
                .company(company_id)
                .run_at(at),
        )
        .await?;
    Ok(())
}

/// The amoCRM user of a member (same e-mail), from the synced user list.
pub(super) fn crm_user_of(meta: &Metadata, email: &str) -> Option<i64> {
    meta.users
        .iter()
        .find(|x| {
            x.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .map(|x| x.id)
}

/// The member of the company an amoCRM user is (same e-mail), who may be assigned.
async fn member_of(
    conn: &impl ConnectionTrait,
    meta: &Metadata,
    company_id: CompanyId,
    crm_user: i64,
) -> Result<Option<Uuid>> {
    let Some(email) = meta
        .users
        .iter()
        .find(|u| u.id == crm_user)
        .and_then(|u| u.email.clone())
    else {
        return Ok(None);
    };
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT u.id AS id, m.role AS role FROM users u JOIN memberships m ON m.user_id = u.id \
             WHERE m.company_id = $1 AND lower(u.email) = lower($2)",
            vec![company_id.into(), email.into()],
        ))
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let role: String = r.try_get("", "role")?;
    let may_reply = chatter_domain::Role::parse(&role).is_some_and(|r| r.can(Permission::Reply));
    Ok(may_reply.then(|| r.try_get("", "id")).transpose()?)
}

/// Chatter → amoCRM: the conversation was assigned to `assignee` (in the caller's
/// transaction). Nothing when the setting is off, the CRM is not connected or the member has
/// no amoCRM user.
pub(super) async fn on_assign(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    conversation_id: ConversationId,
    assignee: Option<Uuid>,
    now: i64,
) -> Result<()> {
    let Some(assignee) = assignee else {
        return Ok(());
    };
    if responsible_lead(conn, company_id).await? == ResponsibleLead::Off {
        return Ok(());
    }
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(conn)
        .await?
        .filter(|i| queues_work(&i.status))
    else {
        return Ok(());
    };
    let meta: Metadata =
        chatter_store::stored_json::read("crm_integrations.metadata", i.company_id, &i.metadata);
    let Some(u) = chatter_store::entity::user::Entity::find_by_id(assignee)
        .one(conn)
        .await?
    else {
        return Ok(());
    };
    let Some(crm_user) = crm_user_of(&meta, &u.email) else {
        return Ok(());
    };
    enqueue_item(
        conn,
        company_id,
        conversation_id,
        None,
        K_RESPONSIBLE,
        serde_json::json!({ "crm_user_id": crm_user }),
        now,
    )
    .await
}

/// The drain's part: the deal's responsible becomes the one the item names.
pub(super) async fn set_responsible(
    core: &Core,
    s: &Session,
    item: &Item,
    link: &Synced,
) -> std::result::Result<(), CrmError> {
    let Some(user) = item.payload["crm_user_id"].as_i64() else {
        return Ok(());
    };
    if link.responsible_user_id != Some(user) {
        s.api.set_deal_responsible(link.deal_id, user).await?;
    }
    core.db
        .execute(stmt(
            core.db.get_database_backend(),
            "UPDATE crm_conversations SET responsible_user_id = $1 WHERE conversation_id = $2",
            vec![user.into(), item.conversation_id.into()],
        ))
        .await
        .map_err(|e| CrmError::Transient(e.to_string()))?;
    Ok(())
}

/// Which side leads, at the moment a conversation gets its deal (`responsible`: the deal's).
pub(super) async fn on_deal_linked(
    conn: &impl ConnectionTrait,
    meta: &Metadata,
    conv: &conversation::Model,
    responsible: Option<i64>,
    now: i64,
) -> Result<()> {
    match responsible_lead(conn, conv.company_id).await? {
        ResponsibleLead::Off => Ok(()),
        ResponsibleLead::Chatter => {
            on_assign(conn, conv.company_id, conv.id, conv.assignee_id, now).await
        }
        ResponsibleLead::Amocrm => match responsible {
            Some(r) => {
                let mut pending = Pending::default();
                move_assignee(conn, &mut pending, meta, conv.company_id, conv.id, r, now).await?;
                Ok(())
            }
            None => Ok(()),
        },
    }
}

/// The conversation's assignee becomes the member who is `crm_user` in amoCRM (when there is
/// one and it changes anything): with its live event and audit entry.
async fn move_assignee(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    meta: &Metadata,
    company_id: CompanyId,
    conversation_id: ConversationId,
    crm_user: i64,
    now: i64,
) -> Result<bool> {
    let Some(member) = member_of(conn, meta, company_id, crm_user).await? else {
        return Ok(false);
    };
    let n = conversation::Entity::update_many()
        .col_expr(
            conversation::Column::AssigneeId,
            sea_orm::sea_query::Expr::value(Some(member)),
        )
        .col_expr(
            conversation::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(conversation::Column::Id.eq(conversation_id))
        .filter(conversation::Column::CompanyId.eq(company_id))
        .filter(
            sea_orm::Condition::any()
                .add(conversation::Column::AssigneeId.is_null())
                .add(conversation::Column::AssigneeId.ne(member)),
        )
        .exec(conn)
        .await?;
    if n.rows_affected == 0 {
        return Ok(false);
    }
    crate::audit::insert(
        conn,
        Some(company_id.uuid()),
        None,
        "amoCRM",
        &crate::ReqMeta::default(),
        now,
        "conversation.assign",
        &conversation_id.to_string(),
        serde_json::json!({ "assignee": member, "crm_user_id": crm_user }),
    )
    .await?;
    crate::events::emit(
        conn,
        pending,
        company_id,
        "conversation",
        serde_json::json!({ "conversation_id": conversation_id }),
        now,
    )
    .await?;
    Ok(true)
}

/// amoCRM → Chatter: looks at the deals changed most recently, under the company's CRM lease.
#[derive(Serialize, Deserialize)]
pub struct CrmResponsiblePull {
    pub company_id: Uuid,
}

#[async_trait]
impl BackgroundJob for CrmResponsiblePull {
    const NAME: &'static str = "crm_responsible_pull";

    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}:{}", Self::NAME, self.company_id))
    }

    async fn run(&self, core: &Core, job: &JobMeta) -> std::result::Result<(), JobError> {
        let company_id = self.company_id;
        let lead = responsible_lead(&core.db, company_id.into())
            .await
            .map_err(store_err)?;
        if lead == ResponsibleLead::Off {
            return Ok(());
        }
        let lease = format!("crm:{company_id}");
        let holder = format!("{}:{}", core.node_id, job.id);
        if !leases::acquire(&core.db, &lease, &holder, core.now(), LEASE_TTL_MS)
            .await
            .map_err(store_err)?
        {
            return Err(JobError::Wait {
                retry_after_ms: 1_000,
                message: "another node is syncing this company".into(),
            });
        }
        let r = pull(core, company_id).await;
        let _ = leases::release(&core.db, &lease, &holder).await;
        r
    }

    async fn done(&self, core: &Core, _job: &JobMeta) {
        // While the setting is on, look again in a minute.
        let on = responsible_lead(&core.db, self.company_id.into())
            .await
            .is_ok_and(|l| l != ResponsibleLead::Off);
        if on {
            let now = core.now();
            if let Err(e) = queue_pull(&core.db, self.company_id, now, now + PULL_EVERY_MS).await {
                tracing::warn!(error = %e, "cannot requeue the amoCRM responsible check");
            }
        }
    }
}

async fn pull(core: &Core, company_id: Uuid) -> std::result::Result<(), JobError> {
    let Some(s) = open_session(core, company_id, false).await? else {
        return Ok(());
    };
    let deals = match s.api.recently_changed_deals(PULL_DEALS).await {
        Ok(d) => d,
        Err(CrmError::RateLimited {
            retry_after_secs,
            message,
        }) => {
            return Err(JobError::RateLimited {
                retry_after_ms: retry_after_secs.max(1) as i64 * 1000,
                message,
            })
        }
        Err(e) => return Err(JobError::Transient(e.to_string())),
    };
    let by_deal: HashMap<i64, i64> = deals
        .iter()
        .filter_map(|d| d.responsible_user_id.map(|r| (d.id, r)))
        .collect();
    if by_deal.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = by_deal.keys().copied().collect();
    let marks: Vec<String> = (2..=ids.len() + 1).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT conversation_id, deal_id, responsible_user_id FROM crm_conversations \
         WHERE company_id = $1 AND deal_id IN ({})",
        marks.join(",")
    );
    let mut values: Vec<Value> = vec![company_id.into()];
    values.extend(ids.iter().map(|d| Value::from(*d)));
    let rows = core
        .db
        .query_all(stmt(core.db.get_database_backend(), &sql, values))
        .await
        .map_err(store_err)?;
    let now = core.now();
    let company: CompanyId = company_id.into();
    let mut pending = Pending::default();
    let txn = core.db.begin().await.map_err(store_err)?;
    let mut moved = 0;
    for r in rows {
        let conv: Uuid = r.try_get("", "conversation_id").map_err(store_err)?;
        let deal: i64 = r.try_get("", "deal_id").map_err(store_err)?;
        let known: Option<i64> = r.try_get("", "responsible_user_id").map_err(store_err)?;
        let Some(now_responsible) = by_deal.get(&deal).copied() else {
            continue;
        };
        if known == Some(now_responsible) {
            continue;
        }
        txn.execute(stmt(
            txn.get_database_backend(),
            "UPDATE crm_conversations SET responsible_user_id = $1, updated_at = $2 WHERE conversation_id = $3",
            vec![now_responsible.into(), now.into(), conv.into()],
        ))
        .await
        .map_err(store_err)?;
        if move_assignee(
            &txn,
            &mut pending,
            &s.meta,
            company,
            conv.into(),
            now_responsible,
            now,
        )
        .await
        .map_err(store_err)?
        {
            moved += 1;
        }
    }
    txn.commit().await.map_err(store_err)?;
    pending.flush(&core.events, core.db.get_database_backend());
    if moved > 0 {
        tracing::info!(moved, "amoCRM changed responsibles: assignees moved");
    }
    Ok(())
}
