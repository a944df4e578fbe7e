//! A person's side in amoCRM: the team's changes to a person (name, phones, e-mail) sent to
//! their amoCRM contact, deals moved onto the kept contact after a merge, and what the customer
//! card shows — the amoCRM contact and, per conversation, its deal with pipeline, stage and
//! responsible named from the synced metadata.

use super::*;
use chatter_crm::ContactChange;

/// The amoCRM contact of a person: the first of `identities` (the person first) that has one.
async fn remote_of(conn: &impl ConnectionTrait, identities: &[Uuid]) -> Result<Option<i64>> {
    let mapped = crm_contact::Entity::find()
        .filter(crm_contact::Column::ContactId.is_in(identities.iter().copied()))
        .all(conn)
        .await?;
    Ok(identities
        .iter()
        .find_map(|id| mapped.iter().find(|m| m.contact_id == *id))
        .map(|m| m.remote_id))
}

/// The person (kept contact first) and every identity merged into them.
async fn identities_of(conn: &impl ConnectionTrait, person: Uuid) -> Result<Vec<contact::Model>> {
    let mut all = contact::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(contact::Column::Id.eq(person))
                .add(contact::Column::MergedInto.eq(person)),
        )
        .order_by_asc(contact::Column::CreatedAt)
        .all(conn)
        .await?;
    all.sort_by_key(|c| c.id.0 != person);
    Ok(all)
}

/// Works a `contact` outbox item: the person's name, phones and e-mail onto their amoCRM
/// contact; with `link`, the conversation's deal linked to that contact first.
pub(super) async fn contact_change(
    core: &Core,
    s: &Session,
    item: &Item,
    link: &Synced,
) -> std::result::Result<(), CrmError> {
    let c = |e: CoreError| CrmError::Transient(e.to_string());
    let Some(person) = item.payload["contact_id"]
        .as_str()
        .and_then(|p| p.parse::<Uuid>().ok())
    else {
        return Ok(());
    };
    let identities = identities_of(&core.db, person).await.map_err(c)?;
    let Some(kept) = identities.first() else {
        return Ok(());
    };
    let ids: Vec<Uuid> = identities.iter().map(|i| i.id.0).collect();
    let Some(remote) = remote_of(&core.db, &ids).await.map_err(c)? else {
        // No amoCRM contact yet: it will be made from what is stored now.
        return Ok(());
    };
    if item.payload["link"].as_bool() == Some(true) {
        if link.contact_id != Some(remote) {
            s.api.link_deal_contact(link.deal_id, remote).await?;
            core.db
                .execute(stmt(
                    core.db.get_database_backend(),
                    "UPDATE crm_conversations SET remote_contact_id = $1 WHERE conversation_id = $2",
                    vec![remote.into(), item.conversation_id.into()],
                ))
                .await
                .map_err(|e| c(e.into()))?;
        }
        return Ok(());
    }
    let mut phones: Vec<String> = Vec::new();
    for p in identities
        .iter()
        .filter_map(|i| i.phone.as_deref())
        .filter_map(chatter_crm::normalize_phone)
    {
        if !phones.contains(&p) {
            phones.push(p);
        }
    }
    let change = ContactChange {
        name: kept.name.clone(),
        phones,
        emails: kept.email.clone().into_iter().collect(),
    };
    s.api.update_contact(remote, &change).await
}

/// A conversation's deal as the card shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DealView {
    pub deal_id: Option<i64>,
    pub deal_url: Option<String>,
    /// Names from the synced metadata; `None` when the sync has not told us yet.
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    pub responsible: Option<String>,
    /// Items of the conversation not in amoCRM yet.
    pub pending: bool,
}

/// A person's side in amoCRM as the customer card shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PersonCrm {
    pub contact_id: Option<i64>,
    pub contact_url: Option<String>,
    /// Per conversation of the person (only those the sync knows of).
    pub deals: HashMap<ConversationId, DealView>,
}

/// The amoCRM side of a person whose identities and conversations the caller read (scoped to
/// the actor's company); `None` when the company has no CRM connected.
pub async fn person_crm(
    core: &Core,
    actor: &Actor,
    identities: &[ContactId],
    conversations: &[ConversationId],
) -> Result<Option<PersonCrm>> {
    actor.require(Permission::Read)?;
    let db = &core.db;
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(actor.company_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let meta: Metadata =
        chatter_store::stored_json::read("crm_integrations.metadata", i.company_id, &i.metadata);
    let ids: Vec<Uuid> = identities.iter().map(|c| c.0).collect();
    let mut out = PersonCrm {
        contact_id: remote_of(db, &ids).await?,
        ..PersonCrm::default()
    };
    let rows = chatter_store::entity::crm_conversation::Entity::find()
        .filter(chatter_store::entity::crm_conversation::Column::CompanyId.eq(actor.company_id))
        .filter(
            chatter_store::entity::crm_conversation::Column::ConversationId
                .is_in(conversations.iter().map(|c| c.0)),
        )
        .all(db)
        .await?;
    let pending: HashSet<Uuid> = db
        .query_all(stmt(
            db.get_database_backend(),
            "SELECT DISTINCT conversation_id FROM crm_outbox WHERE company_id = $1",
            vec![actor.company_id.into()],
        ))
        .await?
        .into_iter()
        .filter_map(|r| r.try_get::<Uuid>("", "conversation_id").ok())
        .collect();
    for r in rows {
        if out.contact_id.is_none() {
            out.contact_id = r.remote_contact_id;
        }
        let decision = r.decision.as_deref().and_then(|d| {
            chatter_store::stored_json::read_opt::<Decision>(
                "crm_conversations.decision",
                r.conversation_id,
                Some(d),
            )
        });
        let (pipeline, stage) = placement(&meta, decision.as_ref());
        out.deals.insert(
            ConversationId(r.conversation_id),
            DealView {
                deal_id: r.deal_id,
                deal_url: r
                    .deal_id
                    .map(|d| format!("{}/leads/detail/{d}", i.base_url)),
                pipeline,
                stage,
                responsible: r.responsible_user_id.and_then(|u| {
                    meta.users
                        .iter()
                        .find(|x| x.id == u)
                        .map(|x| x.name.clone())
                }),
                pending: pending.contains(&r.conversation_id),
            },
        );
    }
    for c in conversations {
        if !out.deals.contains_key(c) && pending.contains(&c.0) {
            out.deals.insert(
                *c,
                DealView {
                    pending: true,
                    ..DealView::default()
                },
            );
        }
    }
    out.contact_url = out
        .contact_id
        .map(|c| format!("{}/contacts/detail/{c}", i.base_url));
    Ok(Some(out))
}

/// The names of a conversation's deal's pipeline, stage and responsible, as the card shows
/// them (all `None` without amoCRM or before the sync placed the deal).
#[derive(Clone, Debug, Default)]
pub struct DealNames {
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    pub responsible: Option<String>,
}

/// [`DealNames`] of `conv`, read inside the caller's connection (the templates' variables).
pub async fn deal_names(
    conn: &impl ConnectionTrait,
    conv: &chatter_store::entity::conversation::Model,
) -> Result<DealNames> {
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(conv.company_id))
        .one(conn)
        .await?
    else {
        return Ok(DealNames::default());
    };
    let Some(r) = chatter_store::entity::crm_conversation::Entity::find_by_id(conv.id.0)
        .one(conn)
        .await?
    else {
        return Ok(DealNames::default());
    };
    let meta: Metadata =
        chatter_store::stored_json::read("crm_integrations.metadata", i.company_id, &i.metadata);
    let decision = r.decision.as_deref().and_then(|d| {
        chatter_store::stored_json::read_opt::<Decision>(
            "crm_conversations.decision",
            r.conversation_id,
            Some(d),
        )
    });
    let (pipeline, stage) = placement(&meta, decision.as_ref());
    let responsible = r.responsible_user_id.and_then(|u| {
        meta.users
            .iter()
            .find(|x| x.id == u)
            .map(|x| x.name.clone())
    });
    Ok(DealNames {
        pipeline,
        stage,
        responsible,
    })
}

/// The pipeline and stage a deal was placed in, named from the metadata: the routing
/// decision's, else amoCRM's main pipeline and its first working stage (where amoCRM puts a
/// deal given none).
fn placement(meta: &Metadata, d: Option<&Decision>) -> (Option<String>, Option<String>) {
    let actions = d.map(|d| &d.actions);
    let pipeline = match actions.and_then(|a| a.pipeline_id) {
        Some(p) => meta.pipelines.iter().find(|x| x.id == p),
        None => meta.pipelines.iter().find(|x| x.is_main),
    };
    let Some(pipeline) = pipeline else {
        return (None, None);
    };
    let stage = match actions.and_then(|a| a.status_id) {
        Some(s) => pipeline.statuses.iter().find(|x| x.id == s),
        None => pipeline
            .statuses
            .iter()
            .find(|x| x.kind == chatter_crm::StageKind::Regular),
    };
    (Some(pipeline.name.clone()), stage.map(|s| s.name.clone()))
}
