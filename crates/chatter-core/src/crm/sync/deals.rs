//! Deals for conversations that have none yet: the routing decision, the contact (ours, found
//! by phone or email, or new), the customer's open deal or a new one, created in batches.

use super::*;

/// A conversation's deal, once it exists.
#[derive(Clone, Debug)]
pub(super) struct Synced {
    pub(super) deal_id: i64,
    pub(super) contact_id: Option<i64>,
    pub(super) chat_ref: Option<String>,
    pub(super) chat_linked: bool,
    pub(super) responsible_user_id: Option<i64>,
}

pub(super) async fn synced_conversations(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Synced>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(200) {
        if chunk.is_empty() {
            continue;
        }
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT conversation_id, deal_id, remote_contact_id, chat_ref, chat_linked, responsible_user_id \
             FROM crm_conversations WHERE deal_id IS NOT NULL AND conversation_id IN ({})",
            marks.join(",")
        );
        let values: Vec<Value> = chunk.iter().map(|u| (*u).into()).collect();
        for r in conn
            .query_all(stmt(conn.get_database_backend(), &sql, values))
            .await?
        {
            out.insert(
                r.try_get("", "conversation_id")?,
                Synced {
                    deal_id: r.try_get("", "deal_id")?,
                    contact_id: r.try_get("", "remote_contact_id")?,
                    chat_ref: r.try_get("", "chat_ref")?,
                    chat_linked: r.try_get("", "chat_linked")?,
                    responsible_user_id: r.try_get("", "responsible_user_id")?,
                },
            );
        }
    }
    Ok(out)
}

/// What the settings decide when no rule fires.
pub fn default_actions(settings: &SyncSettings) -> Actions {
    Actions {
        pipeline_id: settings.pipeline_id,
        status_id: settings.status_id,
        responsible: settings.responsible.clone(),
        tags: settings.tags.clone(),
    }
}

/// The name of the rule that fired, from the decision's explanation.
pub(super) fn rule_name(d: &Decision) -> Option<String> {
    d.explanation.iter().find_map(|s| match s {
        routing::Step::Matched { rule, .. } => Some(rule.clone()),
        _ => None,
    })
}

/// The next user of a round-robin list (the drain holds the company's lease, so a plain
/// read-then-write is safe).
pub(super) async fn next_in_turn(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    list: &[i64],
) -> Result<i64> {
    let key: Vec<String> = list.iter().map(i64::to_string).collect();
    let key = key.join(",");
    let backend = conn.get_database_backend();
    let turn = crm_turn::Entity::find_by_id((company_id, key.clone()))
        .one(conn)
        .await?
        .map_or(0, |t| t.turn);
    conn.execute(stmt(
        backend,
        "INSERT INTO crm_turns (company_id, list_key, turn) VALUES ($1, $2, $3) \
         ON CONFLICT (company_id, list_key) DO UPDATE SET turn = excluded.turn",
        vec![company_id.into(), key.into(), (turn + 1).into()],
    ))
    .await?;
    Ok(list[(turn as usize) % list.len()])
}

pub(super) fn kind_label(kind: Option<SourceKind>) -> &'static str {
    let Some(kind) = kind else {
        return "Chatter";
    };
    // Kinds not connectable yet (no `Kind` of theirs is registered) carry their own label.
    kind.fallback_crm_label()
        .or_else(|| chatter_channels::kind_of(kind).map(|k| k.crm_label()))
        .unwrap_or("Chatter")
}

pub(super) fn kind_tag(kind: Option<SourceKind>) -> String {
    kind.map(|k| k.as_str().to_string())
        .unwrap_or_else(|| "chatter".into())
}

/// What a new deal is made from.
pub(super) struct Prepared {
    pub(super) conversation: conversation::Model,
    pub(super) draft: Option<DealDraft>,
    /// The customer's open deal, joined instead of creating one.
    pub(super) existing_deal: Option<i64>,
    pub(super) contact_remote: Option<i64>,
    pub(super) decision: Decision,
    pub(super) rule_name: Option<String>,
    pub(super) responsible: Option<i64>,
}

/// What preparing a batch of deals reads from our database, in a few queries for the batch.
#[derive(Default)]
pub(super) struct Preloaded {
    pub(super) convs: HashMap<ConversationId, conversation::Model>,
    pub(super) contacts: HashMap<ContactId, contact::Model>,
    pub(super) sources: HashMap<SourceId, source::Model>,
    /// Each conversation's first customer message.
    pub(super) first: HashMap<ConversationId, message::Model>,
    /// Our contact → the CRM's contact.
    pub(super) mapped: HashMap<ContactId, i64>,
    pub(super) settings: HashMap<SourceId, SyncSettings>,
    pub(super) decisions: HashMap<ConversationId, Decision>,
}

pub(super) async fn preload(core: &Core, company_id: Uuid, batch: &[Uuid]) -> Result<Preloaded> {
    let db = &core.db;
    let mut p = Preloaded::default();
    for c in conversation::Entity::find()
        .filter(conversation::Column::Id.is_in(batch.iter().copied()))
        .all(db)
        .await?
    {
        p.convs.insert(c.id, c);
    }
    let contact_ids: Vec<ContactId> = p.convs.values().map(|c| c.contact_id).collect();
    let source_ids: HashSet<SourceId> = p.convs.values().map(|c| c.source_id).collect();
    for c in contact::Entity::find()
        .filter(contact::Column::Id.is_in(contact_ids.iter().copied()))
        .all(db)
        .await?
    {
        p.contacts.insert(c.id, c);
    }
    for src in source::Entity::find()
        .filter(source::Column::Id.is_in(source_ids.iter().copied()))
        .all(db)
        .await?
    {
        let settings = crm_settings::effective(db, company_id.into(), src.id).await?;
        p.settings.insert(src.id, settings);
        p.sources.insert(src.id, src);
    }
    for m in message::Entity::find()
        .filter(message::Column::ConversationId.is_in(batch.iter().copied()))
        .filter(message::Column::Direction.eq(Direction::In))
        .order_by_asc(message::Column::CreatedAt)
        .all(db)
        .await?
    {
        p.first.entry(m.conversation_id).or_insert(m);
    }
    if !contact_ids.is_empty() {
        // A merged identity uses its person's amoCRM contact.
        let persons: Vec<ContactId> = p.contacts.values().filter_map(|c| c.merged_into).collect();
        let mut remote: HashMap<ContactId, i64> = HashMap::new();
        for c in crm_contact::Entity::find()
            .filter(
                crm_contact::Column::ContactId
                    .is_in(contact_ids.iter().chain(persons.iter()).copied()),
            )
            .all(db)
            .await?
        {
            remote.insert(c.contact_id.into(), c.remote_id);
        }
        for id in &contact_ids {
            let person = p.contacts.get(id).and_then(|c| c.merged_into);
            if let Some(r) = person
                .and_then(|x| remote.get(&x))
                .or_else(|| remote.get(id))
            {
                p.mapped.insert(*id, *r);
            }
        }
    }
    // The rules, read and compiled once for the batch.
    let inputs: Vec<(ConversationId, Actions, SourceId, String, i64)> = p
        .convs
        .values()
        .map(|c| {
            let first = p.first.get(&c.id);
            (
                c.id,
                p.settings
                    .get(&c.source_id)
                    .map(default_actions)
                    .unwrap_or_default(),
                c.source_id,
                first.and_then(|m| m.text.clone()).unwrap_or_default(),
                first.map_or(c.created_at, |m| m.created_at),
            )
        })
        .collect();
    let decided = crate::crm::rules::decide_many(
        core,
        company_id.into(),
        &inputs
            .iter()
            .map(|(_, d, src, text, at)| (d, *src, text.as_str(), *at))
            .collect::<Vec<_>>(),
    )
    .await?;
    for ((id, ..), d) in inputs.iter().zip(decided) {
        p.decisions.insert(*id, d);
    }
    Ok(p)
}

pub(super) async fn prepare(
    core: &Core,
    s: &Session,
    pre: &Preloaded,
    conv_id: Uuid,
) -> std::result::Result<Option<Prepared>, CrmError> {
    let db = &core.db;
    let c = |e: CoreError| CrmError::Transient(e.to_string());
    let Some(conv) = pre.convs.get(&ConversationId(conv_id)).cloned() else {
        return Ok(None);
    };
    let contact = pre.contacts.get(&conv.contact_id);
    let src = pre.sources.get(&conv.source_id);
    let first = pre.first.get(&conv.id);
    let first_text = first.and_then(|m| m.text.clone()).unwrap_or_default();
    let settings = pre
        .settings
        .get(&conv.source_id)
        .cloned()
        .unwrap_or_default();
    let Some(decision) = pre.decisions.get(&conv.id).cloned() else {
        return Ok(None);
    };
    let rule_name = rule_name(&decision);
    let kind = src.as_ref().map(|s| s.kind);
    let source_name = src.as_ref().map(|s| s.name.clone()).unwrap_or_default();

    // The contact: our mapping, else the CRM by phone or email.
    let mut contact_remote = None;
    if let Some(ct) = contact {
        contact_remote = pre.mapped.get(&ct.id).copied();
        if contact_remote.is_none() {
            let phones: Vec<String> = ct
                .phone
                .as_deref()
                .and_then(chatter_crm::normalize_phone)
                .into_iter()
                .collect();
            // Where the company stores messenger usernames in a contact field, a contact made
            // by hand with the customer's @username is found too (one more request per new
            // customer, so only then).
            let messenger_keys: Vec<MessengerKey> = match (settings.fields.username, &ct.username) {
                (Some(field), Some(u)) => vec![MessengerKey {
                    field_id: Some(field),
                    value: format!("@{u}"),
                }],
                _ => Vec::new(),
            };
            if !phones.is_empty() || !messenger_keys.is_empty() {
                let q = ContactQuery {
                    phones,
                    messenger_keys,
                    ..ContactQuery::default()
                };
                contact_remote = s.api.find_contact(&q).await?.map(|c| c.id);
            }
        }
    }
    let responsible = match &decision.actions.responsible {
        Some(Responsible::User(u)) => Some(*u),
        Some(Responsible::RoundRobin(list)) if !list.is_empty() => {
            Some(next_in_turn(db, conv.company_id.0, list).await.map_err(c)?)
        }
        _ => None,
    };
    if let Some(remote) = contact_remote {
        if settings.reuse_open_deal != Some(false) {
            if let Some(open) = s.api.find_open_deal(remote).await? {
                return Ok(Some(Prepared {
                    conversation: conv,
                    draft: None,
                    existing_deal: Some(open.id),
                    contact_remote: Some(remote),
                    decision,
                    rule_name,
                    responsible: open.responsible_user_id,
                }));
            }
        }
    }
    let customer = contact
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| conv.title.clone().unwrap_or_default());
    let mut deal_fields = Vec::new();
    let text_field = |id: Option<i64>, v: String, out: &mut Vec<FieldValue>| {
        if let Some(id) = id {
            if !v.is_empty() {
                out.push(FieldValue {
                    field_id: id,
                    values: vec![FieldScalar::Text(v)],
                });
            }
        }
    };
    text_field(
        settings.fields.source_name,
        format!("{} {}", kind_label(kind), source_name),
        &mut deal_fields,
    );
    text_field(
        settings.fields.first_message,
        first_text.chars().take(1000).collect(),
        &mut deal_fields,
    );
    let chat_link = contact
        .as_ref()
        .and_then(|ct| ct.username.as_deref())
        .zip(kind.and_then(chatter_channels::kind_of))
        .and_then(|(u, k)| k.profile_url(u))
        .unwrap_or_else(|| format!("{}/app/inbox/{}", core.config.public_url, conv.id));
    text_field(settings.fields.chat_link, chat_link, &mut deal_fields);
    // What the API source passed with the first message: UTM tags and the sender's email.
    let api_meta = match (&first, kind) {
        (Some(m), Some(SourceKind::Api)) => {
            chatter_store::entity::api_inbound::Entity::find_by_id(m.id)
                .one(db)
                .await
                .map_err(|e| c(e.into()))?
        }
        _ => None,
    };
    if let Some(meta) = &api_meta {
        let utm = [
            (settings.fields.utm_source, &meta.utm_source),
            (settings.fields.utm_medium, &meta.utm_medium),
            (settings.fields.utm_campaign, &meta.utm_campaign),
        ];
        for (field, value) in utm {
            text_field(field, value.clone().unwrap_or_default(), &mut deal_fields);
        }
    }
    let mut tags = vec![kind_tag(kind)];
    if !source_name.is_empty() {
        tags.push(source_name.clone());
    }
    for t in &decision.actions.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    let pipeline_id = decision.actions.pipeline_id;
    let status_id = decision.actions.status_id.or_else(|| {
        // A pipeline without a stage: its first regular stage.
        pipeline_id.and_then(|p| {
            s.meta.pipelines.iter().find(|x| x.id == p).and_then(|x| {
                x.statuses
                    .iter()
                    .find(|st| st.kind == chatter_crm::StageKind::Regular)
                    .map(|st| st.id)
            })
        })
    });
    let unsorted = settings.unsorted == Some(true);
    let deal = NewDeal {
        request_id: conv.id.to_string(),
        name: format!("{}: {customer}", kind_label(kind)),
        pipeline_id,
        status_id: if unsorted { None } else { status_id },
        responsible_user_id: responsible,
        tags,
        fields: deal_fields,
        contact_id: contact_remote,
        unsorted_form: unsorted.then(|| format!("{} {}", kind_label(kind), source_name)),
    };
    let draft_contact = match contact_remote {
        Some(id) => DraftContact::Existing(id),
        None => {
            let mut fields = Vec::new();
            if let Some(ct) = &contact {
                let handle = match &ct.username {
                    Some(u) => format!("@{u}"),
                    None => format!("{}:{}", kind_tag(kind), ct.external_id),
                };
                text_field(settings.fields.username, handle, &mut fields);
            }
            DraftContact::New(Box::new(NewContact {
                name: customer,
                phones: contact
                    .as_ref()
                    .and_then(|c| c.phone.as_deref())
                    .and_then(chatter_crm::normalize_phone)
                    .into_iter()
                    .collect(),
                emails: contact
                    .as_ref()
                    .and_then(|c| c.email.clone())
                    .or_else(|| api_meta.as_ref().and_then(|m| m.sender_email.clone()))
                    .map(|e| e.to_lowercase())
                    .into_iter()
                    .collect(),
                responsible_user_id: responsible,
                fields,
                ..NewContact::default()
            }))
        }
    };
    Ok(Some(Prepared {
        conversation: conv,
        draft: Some(DealDraft {
            deal,
            contact: draft_contact,
        }),
        existing_deal: None,
        contact_remote,
        decision,
        rule_name,
        responsible,
    }))
}

pub(super) async fn record_conversation(
    conn: &impl ConnectionTrait,
    p: &Prepared,
    deal_id: i64,
    contact_remote: Option<i64>,
    now: i64,
) -> Result<()> {
    let decision = serde_json::to_string(&p.decision).unwrap_or_default();
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO crm_conversations (conversation_id, company_id, deal_id, remote_contact_id, chat_ref, chat_linked, \
         rule_id, rule_name, decision, responsible_user_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULL, false, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (conversation_id) DO UPDATE SET deal_id = excluded.deal_id, \
         remote_contact_id = excluded.remote_contact_id, rule_id = excluded.rule_id, rule_name = excluded.rule_name, \
         decision = excluded.decision, responsible_user_id = excluded.responsible_user_id, updated_at = excluded.updated_at",
        vec![
            p.conversation.id.into(),
            p.conversation.company_id.into(),
            deal_id.into(),
            contact_remote.into(),
            p.decision.rule_id.clone().into(),
            p.rule_name.clone().into(),
            decision.into(),
            p.responsible.into(),
            now.into(),
        ],
    ))
    .await?;
    if let Some(remote) = contact_remote {
        conn.execute(stmt(
            conn.get_database_backend(),
            "INSERT INTO crm_contacts (contact_id, company_id, remote_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (contact_id) DO NOTHING",
            vec![
                p.conversation.contact_id.into(),
                p.conversation.company_id.into(),
                remote.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// Creates the deals of `batch` (one `leads/complex` call for the new ones).
pub(super) async fn create_deals(
    core: &Core,
    s: &Session,
    batch: &[Uuid],
    items: &[Item],
) -> std::result::Result<(), Stop> {
    let first_item = |conv: Uuid| items.iter().find(|i| i.conversation_id == conv);
    let t0 = std::time::Instant::now();
    let pre = match preload(core, s.integration.company_id, batch).await {
        Ok(p) => p,
        Err(e) => return Err(db_stop(e)),
    };
    tracing::debug!(
        conversations = batch.len(),
        ms = t0.elapsed().as_millis() as u64,
        "CRM deals: preloaded"
    );
    let mut prepared: Vec<Prepared> = Vec::new();
    for conv in batch {
        match prepare(core, s, &pre, *conv).await {
            Ok(Some(p)) => prepared.push(p),
            Ok(None) => {
                // The conversation is gone: its items have nothing to do.
                for i in items.iter().filter(|i| i.conversation_id == *conv) {
                    settle(core, i, Ok(())).await?;
                }
            }
            Err(e) => {
                if let Some(stop) = stop_of(&e) {
                    return Err(stop);
                }
                if let Some(i) = first_item(*conv) {
                    settle(core, i, Err(e)).await?;
                }
            }
        }
    }
    let now = core.now();
    let mut fresh: Vec<&Prepared> = Vec::new();
    for p in &prepared {
        match (&p.draft, p.existing_deal) {
            (_, Some(deal)) => {
                record_conversation(&core.db, p, deal, p.contact_remote, now)
                    .await
                    .map_err(db_stop)?;
                on_deal_linked(&core.db, &s.meta, &p.conversation, p.responsible, now)
                    .await
                    .map_err(db_stop)?;
                forget_attempts(&core.db, &[p.conversation.id.0])
                    .await
                    .map_err(db_stop)?;
            }
            (Some(_), None) => fresh.push(p),
            (None, None) => {}
        }
    }
    // A batch whose answer was lost may have made some of these deals: find them by their
    // marker and make only the rest.
    let fresh = match recover_lost(core, s, &fresh).await {
        Ok(rest) => rest,
        Err(e) => {
            if let Some(stop) = stop_of(&e) {
                return Err(stop);
            }
            for p in &fresh {
                if let Some(i) = first_item(p.conversation.id.0) {
                    settle(core, i, Err(e.clone())).await?;
                }
            }
            return Ok(());
        }
    };
    if fresh.is_empty() {
        return Ok(());
    }
    let marker = new_marker();
    let mut drafts = Vec::new();
    let mut marked: Vec<Uuid> = Vec::new();
    for p in &fresh {
        let Some(mut d) = p.draft.clone() else {
            continue;
        };
        let field = pre
            .settings
            .get(&p.conversation.source_id)
            .and_then(|x| x.fields.marker);
        if let Some(field) = field {
            d.deal.fields.push(FieldValue {
                field_id: field,
                values: vec![FieldScalar::Text(marker_value(
                    p.conversation.id.0,
                    &marker,
                ))],
            });
            marked.push(p.conversation.id.0);
        }
        drafts.push(d);
    }
    // Written before the call, so a crash or a lost answer leaves the marker to search for.
    note_attempt(core, s.integration.company_id, &marked, &marker)
        .await
        .map_err(db_stop)?;
    let t0 = std::time::Instant::now();
    let answer = s.api.create_deals(&drafts).await;
    tracing::debug!(
        deals = drafts.len(),
        ms = t0.elapsed().as_millis() as u64,
        "CRM deals: leads/complex"
    );
    match answer {
        Ok(results) => {
            let by_request: HashMap<String, &Prepared> = prepared
                .iter()
                .map(|p| (p.conversation.id.to_string(), p))
                .collect();
            let mut created = Vec::new();
            let mut refused = Vec::new();
            for r in results {
                let Some(p) = by_request.get(&r.request_id) else {
                    continue;
                };
                match r.result {
                    Ok(c) => created.push((*p, c.deal_id, c.contact_id.or(p.contact_remote))),
                    Err(e) => refused.push((p.conversation.id, e)),
                }
            }
            // Every mapping of the batch in one commit (nothing else may use the connection
            // meanwhile: SQLite has one).
            let now = core.now();
            let write = async {
                let txn = core.db.begin().await?;
                for (p, deal, contact) in &created {
                    record_conversation(&txn, p, *deal, *contact, now).await?;
                    on_deal_linked(&txn, &s.meta, &p.conversation, p.responsible, now).await?;
                }
                // The answer is known: nothing of this batch is left to look for.
                forget_attempts(&txn, &marked).await?;
                txn.commit().await?;
                Ok::<(), CoreError>(())
            };
            write.await.map_err(db_stop)?;
            for (conv, e) in refused {
                if let Some(i) = first_item(conv.0) {
                    settle(core, i, Err(e)).await?;
                }
            }
            touch_sync(core, s).await;
            Ok(())
        }
        Err(e) => {
            if matches!(e, CrmError::Permanent { .. }) {
                // Refused as a whole: amoCRM made nothing.
                forget_attempts(&core.db, &marked).await.map_err(db_stop)?;
            }
            if let Some(stop) = stop_of(&e) {
                return Err(stop);
            }
            for p in &fresh {
                if let Some(i) = first_item(p.conversation.id.0) {
                    settle(core, i, Err(e.clone())).await?;
                }
            }
            Ok(())
        }
    }
}

/// Remembers when the CRM last accepted our work (the troubleshooting page shows it).
pub(super) async fn touch_sync(core: &Core, s: &Session) {
    let r = crm_integration::Entity::update_many()
        .col_expr(
            crm_integration::Column::LastSyncAt,
            sea_orm::sea_query::Expr::value(core.now()),
        )
        .filter(crm_integration::Column::Id.eq(s.integration.id))
        .exec(&core.db)
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot record the CRM sync time");
    }
}
