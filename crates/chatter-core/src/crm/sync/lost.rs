//! Deals of a `leads/complex` call whose answer was lost (issue 15, item 3): each new deal
//! carries a marker in the company's chosen deal field — the conversation id and a token of the
//! call — and `crm_deal_attempts` keeps the token until amoCRM's answer is known. Before a
//! conversation gets a deal, the tokens of its unanswered calls are searched for (one `query=`
//! request per call, and a call is one batch), so the deals they made are taken as ours and
//! only the missing ones are made.

use super::deals::Prepared;
use super::*;

/// A marker for one `leads/complex` call: searched for as a whole word of the field's value.
pub(super) fn new_marker() -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("chb{}", &id[..16])
}

/// What the marker field of a deal holds: the conversation it belongs to, then the call.
pub(super) fn marker_value(conversation: Uuid, marker: &str) -> String {
    format!("{conversation} {marker}")
}

/// The conversation a marker field's value names.
pub(super) fn marked_conversation(value: &str) -> Option<Uuid> {
    value
        .split_whitespace()
        .next()
        .and_then(|v| Uuid::parse_str(v).ok())
}

pub(super) async fn note_attempt(
    core: &Core,
    company_id: Uuid,
    conversations: &[Uuid],
    marker: &str,
) -> Result<()> {
    if conversations.is_empty() {
        return Ok(());
    }
    let now = core.now();
    let txn = core.db.begin().await?;
    for c in conversations {
        txn.execute(stmt(
            txn.get_database_backend(),
            "INSERT INTO crm_deal_attempts (conversation_id, marker, company_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id, marker) DO NOTHING",
            vec![
                (*c).into(),
                marker.to_owned().into(),
                company_id.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

pub(super) async fn forget_attempts(
    conn: &impl ConnectionTrait,
    conversations: &[Uuid],
) -> Result<()> {
    for chunk in conversations.chunks(200) {
        if chunk.is_empty() {
            continue;
        }
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM crm_deal_attempts WHERE conversation_id IN ({})",
            marks.join(",")
        );
        let values: Vec<Value> = chunk.iter().map(|u| (*u).into()).collect();
        conn.execute(stmt(conn.get_database_backend(), &sql, values))
            .await?;
    }
    Ok(())
}

/// The conversations of `fresh` whose deal an earlier call may have made (its answer lost):
/// one search per marker of those calls (one, as a rule), the deals found recorded as theirs.
/// Returns the conversations that still need a deal.
pub(super) async fn recover_lost<'a>(
    core: &Core,
    s: &Session,
    fresh: &[&'a Prepared],
) -> std::result::Result<Vec<&'a Prepared>, CrmError> {
    let db_err = |e: CoreError| CrmError::Transient(e.to_string());
    let ids: Vec<Uuid> = fresh.iter().map(|p| p.conversation.id.0).collect();
    let mut markers: Vec<String> = Vec::new();
    for chunk in ids.chunks(200) {
        if chunk.is_empty() {
            continue;
        }
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT DISTINCT marker FROM crm_deal_attempts WHERE conversation_id IN ({})",
            marks.join(",")
        );
        let values: Vec<Value> = chunk.iter().map(|u| (*u).into()).collect();
        for r in core
            .db
            .query_all(stmt(core.db.get_database_backend(), &sql, values))
            .await
            .map_err(|e| db_err(e.into()))?
        {
            let m: String = r.try_get("", "marker").map_err(|e| db_err(e.into()))?;
            if !markers.contains(&m) {
                markers.push(m);
            }
        }
    }
    if markers.is_empty() {
        return Ok(fresh.to_vec());
    }
    let mut found: HashMap<Uuid, chatter_crm::MarkedDeal> = HashMap::new();
    for m in &markers {
        for d in s.api.find_marked_deals(m).await? {
            if let Some(conv) = marked_conversation(&d.value) {
                if ids.contains(&conv) {
                    // The oldest deal, should two calls both have made one.
                    let keep = found.get(&conv).is_none_or(|x| x.deal_id > d.deal_id);
                    if keep {
                        found.insert(conv, d);
                    }
                }
            }
        }
    }
    tracing::info!(
        markers = markers.len(),
        found = found.len(),
        "CRM deals: looked for the deals of batches whose answer was lost"
    );
    let now = core.now();
    let write = async {
        let txn = core.db.begin().await?;
        for p in fresh {
            if let Some(d) = found.get(&p.conversation.id.0) {
                let contact = d.contact_id.or(p.contact_remote);
                record_conversation(&txn, p, d.deal_id, contact, now).await?;
                on_deal_linked(&txn, &s.meta, &p.conversation, p.responsible, now).await?;
            }
        }
        // Searched: what was not found was not made.
        forget_attempts(&txn, &ids).await?;
        txn.commit().await?;
        Ok::<(), CoreError>(())
    };
    write.await.map_err(db_err)?;
    Ok(fresh
        .iter()
        .filter(|p| !found.contains_key(&p.conversation.id.0))
        .copied()
        .collect())
}
