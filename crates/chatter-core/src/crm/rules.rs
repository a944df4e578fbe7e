//! Routing rules (requirement R3.4): a company's ordered rules, stored as one JSON document in
//! `routing_rules` and edited by admins; the decision for a new conversation, which the CRM
//! sync asks for; and the dry run behind the rules page. The rules themselves (matching,
//! validation, explanations) live in [`chatter_domain::routing`].

use crate::{audit, crm, Actor, Core, CoreError, Result};
use chatter_domain::routing::{self, Actions, Decision, Input, Responsible, Rule, RuleSet};
use chatter_domain::values::{limits, optional_text};
use chatter_domain::{FieldError, Permission, SourceId};
use chatter_store::entity::{company, routing_rule, source};
use chatter_store::stmt;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, TransactionTrait, Value,
};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use uuid::Uuid;

/// Where a rule goes in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
}

/// The company's rules, in the order they are tried.
pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<Rule>> {
    actor.require(Permission::Read)?;
    Ok(load(&core.db, actor.company_id)
        .await?
        .map(|s| s.rules)
        .unwrap_or_default())
}

/// One rule of the company.
pub async fn get(core: &Core, actor: &Actor, id: &str) -> Result<Rule> {
    list(core, actor)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(CoreError::NotFound)
}

/// Creates the rule (at the end of the list; an empty id gets a new one) or replaces the rule
/// with its id in place. A rule that does not validate is refused with one field error per
/// problem (see [`problems`] for the words and the regex position) and nothing is stored.
/// Returns the rule's id.
pub async fn save(core: &Core, actor: &Actor, mut rule: Rule) -> Result<String> {
    actor.require(Permission::Manage)?;
    rule.name = rule.name.trim().to_owned();
    if rule.id.trim().is_empty() {
        rule.id = Uuid::now_v7().to_string();
    }
    let over = over_limits(&rule);
    if !over.is_empty() {
        return Err(CoreError::Invalid(over));
    }
    let mut errors: Vec<FieldError> = routing::validate(&rule)
        .err()
        .unwrap_or_default()
        .iter()
        .map(|e| FieldError::new(e.field, key_of(e.field)))
        .collect();
    errors.extend(check_references(core, actor, &rule).await?);
    if !errors.is_empty() {
        errors.dedup_by(|a, b| a.field == b.field);
        return Err(CoreError::Invalid(errors));
    }
    let id = rule.id.clone();
    edit(core, actor, |rules| {
        match rules.iter_mut().find(|r| r.id == rule.id) {
            Some(r) => *r = rule,
            None => rules.push(rule),
        }
        Ok(())
    })
    .await?;
    Ok(id)
}

/// Removes a rule.
pub async fn delete(core: &Core, actor: &Actor, id: &str) -> Result<()> {
    actor.require(Permission::Manage)?;
    edit(core, actor, |rules| {
        let at = position(rules, id)?;
        rules.remove(at);
        Ok(())
    })
    .await
}

/// Moves a rule one place up or down; at either end nothing changes.
pub async fn move_rule(core: &Core, actor: &Actor, id: &str, to: Move) -> Result<()> {
    actor.require(Permission::Manage)?;
    edit(core, actor, |rules| {
        let at = position(rules, id)?;
        match to {
            Move::Up if at > 0 => rules.swap(at, at - 1),
            Move::Down if at + 1 < rules.len() => rules.swap(at, at + 1),
            _ => {}
        }
        Ok(())
    })
    .await
}

/// Turns a rule on or off (a disabled rule is kept, and skipped when deciding).
pub async fn set_enabled(core: &Core, actor: &Actor, id: &str, enabled: bool) -> Result<()> {
    actor.require(Permission::Manage)?;
    edit(core, actor, |rules| {
        let at = position(rules, id)?;
        rules[at].enabled = enabled;
        Ok(())
    })
    .await
}

/// The words behind a refused rule's field errors, as the domain gives them (English):
/// for `conditions.regex` the message names the character and `position` is its byte offset.
pub fn problems(rule: &Rule) -> Vec<routing::RuleError> {
    routing::validate(rule).err().unwrap_or_default()
}

/// Routes a new conversation of `company_id`: the first enabled rule that matches `text`
/// from `input_source` at `at_ms` (read in the company's time zone), else `default`; with the
/// explanation. Compiled rules are kept per company until the stored rules change.
pub async fn decide(
    core: &Core,
    company_id: chatter_domain::CompanyId,
    default: &Actions,
    input_source: SourceId,
    text: &str,
    at_ms: i64,
) -> Result<Decision> {
    let at = DateTime::<Utc>::from_timestamp_millis(at_ms)
        .ok_or_else(|| CoreError::field("at", "rules.err_at"))?;
    let tz = time_zone(&core.db, company_id).await?;
    let stored = load(&core.db, company_id).await?.unwrap_or(Stored {
        text: String::new(),
        rules: Vec::new(),
    });
    let input = Input {
        source_id: input_source.0,
        text,
        at,
        tz,
    };
    Ok(match compiled(company_id.uuid(), &stored) {
        Some(set) => set.decide(default, &input),
        // Stored rules that no longer compile (written by hand or by an older version): decide
        // on the spot, which skips the broken rule and says so in the explanation.
        None => routing::decide(&stored.rules, default, &input),
    })
}

/// [`decide`] for many messages of one company, reading and compiling the rules once:
/// `(default, source, text, at_ms)` each, the decisions in the same order.
pub async fn decide_many(
    core: &Core,
    company_id: chatter_domain::CompanyId,
    items: &[(&Actions, SourceId, &str, i64)],
) -> Result<Vec<Decision>> {
    let tz = time_zone(&core.db, company_id).await?;
    let stored = load(&core.db, company_id).await?.unwrap_or(Stored {
        text: String::new(),
        rules: Vec::new(),
    });
    let set = compiled(company_id.uuid(), &stored);
    let mut out = Vec::with_capacity(items.len());
    for (default, source_id, text, at_ms) in items {
        let at = DateTime::<Utc>::from_timestamp_millis(*at_ms)
            .ok_or_else(|| CoreError::field("at", "rules.err_at"))?;
        let input = Input {
            source_id: source_id.0,
            text,
            at,
            tz,
        };
        out.push(match &set {
            Some(set) => set.decide(default, &input),
            None => routing::decide(&stored.rules, default, &input),
        });
    }
    Ok(out)
}

/// What the rules would decide for `text` from `source_id` at `at`, a local date and time in
/// the company's time zone (`2025-03-08T23:30`; empty = now), with an empty default (the
/// source's CRM settings fill in what no rule sets). For the dry run on the rules page.
pub async fn dry_run(
    core: &Core,
    actor: &Actor,
    source_id: SourceId,
    text: &str,
    at: &str,
) -> Result<Decision> {
    actor.require(Permission::Read)?;
    let owned = source::Entity::find_by_id(source_id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?;
    if owned.is_none() {
        return Err(CoreError::field("source", "rules.err_source"));
    }
    let at_ms = match at.trim() {
        "" => core.now(),
        s => {
            let tz = time_zone(&core.db, actor.company_id).await?;
            local_to_utc(tz, s)
                .ok_or_else(|| CoreError::field("at", "rules.err_at"))?
                .timestamp_millis()
        }
    };
    // The default is what the CRM settings give this source, as the sync applies it.
    let settings = crate::crm::settings::effective(&core.db, actor.company_id, source_id).await?;
    let default = crate::crm::sync::default_actions(&settings);
    decide(core, actor.company_id, &default, source_id, text, at_ms).await
}

/// The company's time zone (`companies.timezone`), Moscow when it is not a known zone.
pub async fn time_zone(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
) -> Result<chrono_tz::Tz> {
    let c = company::Entity::find_by_id(company_id)
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)?;
    Ok(c.timezone.parse().unwrap_or(chrono_tz::Europe::Moscow))
}

/// `2025-03-08T23:30` (an HTML `datetime-local` value, seconds optional) in `tz`. A time that
/// the clocks skip is refused; one they pass twice is the earlier.
fn local_to_utc(tz: chrono_tz::Tz, s: &str) -> Option<DateTime<Utc>> {
    let naive = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The stored document.
struct Stored {
    text: String,
    rules: Vec<Rule>,
}

async fn load(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
) -> Result<Option<Stored>> {
    let Some(row) = routing_rule::Entity::find_by_id(company_id)
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let text = row.rules;
    let rules = serde_json::from_str(&text)
        .map_err(|e| CoreError::Internal(format!("routing rules of {company_id}: {e}")))?;
    Ok(Some(Stored { text, rules }))
}

/// Changes the company's list under a lock on its row, stores it and records the change.
async fn edit<T>(
    core: &Core,
    actor: &Actor,
    change: impl FnOnce(&mut Vec<Rule>) -> Result<T>,
) -> Result<T> {
    let now = core.now();
    let txn = core.db.begin().await?;
    let backend = txn.get_database_backend();
    let company: Value = actor.company_id.into();
    // The row exists before it is locked; SQLite has a single writer, PostgreSQL locks the row.
    txn.execute(stmt(
        backend,
        "INSERT INTO routing_rules (company_id, rules, updated_at) VALUES ($1, '[]', $2) \
         ON CONFLICT (company_id) DO NOTHING",
        vec![company.clone(), now.into()],
    ))
    .await?;
    let lock = match backend {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    };
    let row = txn
        .query_one(stmt(
            backend,
            &format!("SELECT rules FROM routing_rules WHERE company_id = $1{lock}"),
            vec![company.clone()],
        ))
        .await?
        .ok_or_else(|| CoreError::Internal("the routing_rules row just written".into()))?;
    let text: String = row.try_get("", "rules")?;
    let mut rules: Vec<Rule> = serde_json::from_str(&text)
        .map_err(|e| CoreError::Internal(format!("routing rules: {e}")))?;
    let before = rules.clone();
    let out = change(&mut rules)?;
    if rules != before {
        let json = serde_json::to_string(&rules).map_err(|e| CoreError::Internal(e.to_string()))?;
        txn.execute(stmt(
            backend,
            "UPDATE routing_rules SET rules = $1, updated_at = $2 WHERE company_id = $3",
            vec![json.into(), now.into(), company],
        ))
        .await?;
        let (action, target, details) = describe(&before, &rules);
        audit::record(&txn, actor, now, action, &target, details).await?;
    }
    txn.commit().await?;
    Ok(out)
}

/// The audit entry for a change of the list: which rule and how.
fn describe(before: &[Rule], after: &[Rule]) -> (&'static str, String, serde_json::Value) {
    let order = |rules: &[Rule]| rules.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    if let Some(new) = after.iter().find(|r| !before.iter().any(|b| b.id == r.id)) {
        return (
            "rules.create",
            new.name.clone(),
            serde_json::json!({"id": new.id}),
        );
    }
    if let Some(gone) = before.iter().find(|r| !after.iter().any(|a| a.id == r.id)) {
        return (
            "rules.delete",
            gone.name.clone(),
            serde_json::json!({"id": gone.id}),
        );
    }
    if order(before) != order(after) {
        let moved = after
            .iter()
            .zip(before)
            .find(|(a, b)| a.id != b.id)
            .map(|(a, _)| a.name.clone())
            .unwrap_or_default();
        return (
            "rules.reorder",
            moved,
            serde_json::json!({"order": order(after)}),
        );
    }
    let changed = after
        .iter()
        .zip(before)
        .find(|(a, b)| a != b)
        .map(|(a, b)| {
            let only_enabled = Rule {
                enabled: a.enabled,
                ..b.clone()
            } == *a;
            (a, only_enabled)
        });
    match changed {
        Some((r, true)) => (
            if r.enabled {
                "rules.enable"
            } else {
                "rules.disable"
            },
            r.name.clone(),
            serde_json::json!({"id": r.id}),
        ),
        Some((r, false)) => (
            "rules.update",
            r.name.clone(),
            serde_json::json!({"id": r.id}),
        ),
        None => ("rules.update", String::new(), serde_json::json!({})),
    }
}

fn position(rules: &[Rule], id: &str) -> Result<usize> {
    rules
        .iter()
        .position(|r| r.id == id)
        .ok_or(CoreError::NotFound)
}

/// The translation key of a domain validation problem.
/// The limits of a rule's text (docs/limits.md): a one-line name, regex, keywords and tags of
/// bounded length, and bounded lists. An empty name is the domain's to refuse.
fn over_limits(rule: &Rule) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut one = |field: &'static str, s: &str, max: usize| {
        if let Err(e) = optional_text(field, s, max) {
            errors.push(e);
        }
    };
    one("name", &rule.name, limits::RULE_NAME);
    one(
        "conditions.regex",
        rule.conditions.regex.as_deref().unwrap_or(""),
        limits::REGEX,
    );
    let lists = [
        (
            "conditions.keywords",
            &rule.conditions.keywords,
            limits::KEYWORD,
            limits::KEYWORDS,
        ),
        (
            "conditions.exclude",
            &rule.conditions.exclude,
            limits::KEYWORD,
            limits::KEYWORDS,
        ),
        (
            "actions.tags",
            &rule.actions.tags,
            limits::TAG,
            limits::TAGS,
        ),
    ];
    for (field, items, max, count) in lists {
        if items.len() > count {
            errors.push(FieldError::too_many(field, count));
        } else if let Some(e) = items
            .iter()
            .find_map(|s| optional_text(field, s, max).err())
        {
            errors.push(e);
        }
    }
    errors
}

fn key_of(field: &str) -> &'static str {
    match field {
        "name" => "rules.err_name",
        "conditions.regex" => "rules.err_regex",
        "conditions.keywords" | "conditions.exclude" => "rules.err_words",
        "conditions.windows" => "rules.err_window_days",
        "actions.responsible" => "rules.err_round_robin",
        "actions.status_id" => "rules.err_stage_pipeline",
        "actions.tags" => "rules.err_tag",
        _ => "err.invalid",
    }
}

/// Sources of this company; pipelines, stages and users that the synced amoCRM account has
/// (checked only once an account is connected).
async fn check_references(core: &Core, actor: &Actor, rule: &Rule) -> Result<Vec<FieldError>> {
    let mut errors = Vec::new();
    let c = &rule.conditions;
    if !c.sources.is_empty() {
        let known = source::Entity::find()
            .filter(source::Column::CompanyId.eq(actor.company_id))
            .filter(source::Column::Id.is_in(c.sources.clone()))
            .all(&core.db)
            .await?;
        if c.sources.iter().any(|s| !known.iter().any(|k| k.id == *s)) {
            errors.push(FieldError::new("conditions.sources", "rules.err_source"));
        }
    }
    let Some((_, meta)) = crm::get(core, actor).await? else {
        return Ok(errors);
    };
    if meta.pipelines.is_empty() {
        return Ok(errors);
    }
    let a = &rule.actions;
    let pipeline = a
        .pipeline_id
        .map(|id| meta.pipelines.iter().find(|p| p.id == id));
    match (pipeline, a.status_id) {
        (Some(None), _) => {
            errors.push(FieldError::new("actions.pipeline_id", "rules.err_pipeline"))
        }
        (Some(Some(p)), Some(s)) if !p.statuses.iter().any(|x| x.id == s) => {
            errors.push(FieldError::new("actions.status_id", "rules.err_stage"))
        }
        (None, Some(s))
            if !meta
                .pipelines
                .iter()
                .any(|p| p.statuses.iter().any(|x| x.id == s)) =>
        {
            errors.push(FieldError::new("actions.status_id", "rules.err_stage"))
        }
        _ => {}
    }
    let users: &[i64] = match &a.responsible {
        Some(Responsible::User(u)) => std::slice::from_ref(u),
        Some(Responsible::RoundRobin(us)) => us,
        _ => &[],
    };
    if users.iter().any(|u| !meta.users.iter().any(|x| x.id == *u)) {
        errors.push(FieldError::new("actions.responsible", "rules.err_user"));
    }
    Ok(errors)
}

/// Compiled rule sets by company, with the stored text they were compiled from.
type Cache = HashMap<Uuid, (String, Arc<RuleSet>)>;

static COMPILED: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

/// Most companies a process keeps compiled rules for before it starts over.
const CACHE_LIMIT: usize = 10_000;

/// The compiled rules of `stored`, from the cache while the stored text is the same (keyed by
/// content, not `updated_at`: two saves within a millisecond must not share an entry).
fn compiled(company_id: Uuid, stored: &Stored) -> Option<Arc<RuleSet>> {
    if let Ok(cache) = COMPILED.lock() {
        if let Some((text, set)) = cache.get(&company_id) {
            if *text == stored.text {
                return Some(set.clone());
            }
        }
    }
    let set = Arc::new(RuleSet::compile(&stored.rules).ok()?);
    if let Ok(mut cache) = COMPILED.lock() {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(company_id, (stored.text.clone(), set.clone()));
    }
    Some(set)
}
