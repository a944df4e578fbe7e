//! The team's figures for the dashboard: conversations open and waiting for an answer now, new
//! ones today and in 7 days, the median first-response time (overall, by source, by the
//! manager who answered first) over 30 days, and inbound messages per day per source for the
//! chart. Days are the company's calendar days (its time zone).
//!
//! A conversation "waits for an answer" when it is open and its latest message is the
//! customer's. The first-response time of a conversation is the time from its first customer
//! message to the first message sent to the customer after it; conversations not answered yet
//! are left out of the median (they are counted as waiting instead).
//!
//! These facts are kept on each conversation as its messages are stored
//! (`chatter_store::figures`), so the figures read indexed conversation rows (and, for the
//! chart, an index of the messages) rather than every message of the company.

use crate::{Actor, Core, Result};
use chatter_domain::Permission;
use chatter_store::entity::{company, source, user};
use chatter_store::stmt;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub mod period;

pub const DAY_MS: i64 = 24 * 3600 * 1000;
/// Days in the chart and in the response-time figures.
pub const PERIOD_DAYS: i64 = 30;

/// A median over some conversations, with how many it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Median {
    pub ms: Option<i64>,
    pub answered: usize,
}

/// A named group (a source or a manager) and its median first response.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub median: Median,
}

/// One source's line in the chart: inbound messages per day, oldest day first.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub per_day: Vec<i64>,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    pub open: i64,
    pub waiting: i64,
    pub new_today: i64,
    pub new_7_days: i64,
    pub first_response: Median,
    pub by_source: Vec<Group>,
    pub by_manager: Vec<Group>,
    /// The first day of the chart (the company's midnight, Unix ms).
    pub since: i64,
    pub series: Vec<Series>,
}

fn median(mut v: Vec<i64>) -> Median {
    v.sort_unstable();
    let answered = v.len();
    let ms = match answered {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    };
    Median { ms, answered }
}

/// The offset of the company's time zone from UTC now, in ms (Europe/Moscow when unknown).
fn offset_ms(tz: &str, now: i64) -> i64 {
    use chrono::Offset;
    let zone: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::Europe::Moscow);
    chrono::DateTime::from_timestamp_millis(now)
        .map(|t| i64::from(t.with_timezone(&zone).offset().fix().local_minus_utc()) * 1000)
        .unwrap_or(3 * 3600 * 1000)
}

/// The company's last midnight before `now`, in Unix ms.
fn midnight(now: i64, offset: i64) -> i64 {
    (now + offset).div_euclid(DAY_MS) * DAY_MS - offset
}

/// The names of the company's sources.
async fn source_names(
    db: &sea_orm::DatabaseConnection,
    company: chatter_domain::CompanyId,
) -> Result<BTreeMap<Uuid, String>> {
    Ok(source::Entity::find()
        .filter(source::Column::CompanyId.eq(company))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id.0, s.name))
        .collect())
}

/// The names of the people `ids`.
async fn user_names(
    db: &sea_orm::DatabaseConnection,
    ids: impl Iterator<Item = Uuid>,
) -> Result<HashMap<Uuid, String>> {
    let ids: Vec<Uuid> = ids.collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

pub async fn dashboard(core: &Core, actor: &Actor) -> Result<Dashboard> {
    actor.require(Permission::Read)?;
    let db = &core.read;
    let b = db.get_database_backend();
    let company = actor.company_id;
    let now = core.now();
    let tz = company::Entity::find_by_id(company)
        .one(db)
        .await?
        .map(|c| c.timezone)
        .unwrap_or_default();
    let offset = offset_ms(&tz, now);
    let today = midnight(now, offset);
    let since = today - (PERIOD_DAYS - 1) * DAY_MS;

    // Every figure below reads conversation rows through an index: the facts are kept on the
    // conversation as its messages are stored (`chatter_store::figures`).
    let get = |r: &Option<sea_orm::QueryResult>, c: &str| {
        r.as_ref()
            .and_then(|r| r.try_get::<i64>("", c).ok())
            .unwrap_or(0)
    };
    let row = db
        .query_one(stmt(
            b,
            "SELECT count(*) AS open, \
             coalesce(sum(CASE WHEN last_in_at > coalesce(last_out_at, 0) THEN 1 ELSE 0 END), 0) AS waiting \
             FROM conversations WHERE company_id = $1 AND status = 'open'",
            vec![company.into()],
        ))
        .await?;
    let (open, waiting) = (get(&row, "open"), get(&row, "waiting"));
    let row = db
        .query_one(stmt(
            b,
            "SELECT count(*) AS week, \
             coalesce(sum(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END), 0) AS today \
             FROM conversations WHERE company_id = $1 AND created_at >= $3",
            vec![company.into(), today.into(), (today - 6 * DAY_MS).into()],
        ))
        .await?;
    let (new_today, new_7_days) = (get(&row, "today"), get(&row, "week"));

    // First responses of the conversations whose first customer message is in the period.
    let rows = db
        .query_all(stmt(
            b,
            "SELECT source_id, first_responder_id, first_response_at - first_in_at AS took \
             FROM conversations WHERE company_id = $1 AND first_in_at >= $2 \
             AND first_response_at IS NOT NULL",
            vec![company.into(), since.into()],
        ))
        .await?;
    let mut all = Vec::with_capacity(rows.len());
    let mut per_source: HashMap<Uuid, Vec<i64>> = HashMap::new();
    let mut per_author: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for r in rows {
        let took: i64 = r.try_get("", "took")?;
        all.push(took);
        let source: Uuid = r.try_get("", "source_id")?;
        per_source.entry(source).or_default().push(took);
        if let Some(a) = r.try_get::<Option<Uuid>>("", "first_responder_id")? {
            per_author.entry(a).or_default().push(took);
        }
    }

    let sources = source_names(db, company).await?;
    let users = user_names(db, per_author.keys().copied()).await?;
    let name_of = |m: &BTreeMap<Uuid, String>, id: &Uuid| m.get(id).cloned().unwrap_or_default();
    let mut by_source: Vec<Group> = per_source
        .into_iter()
        .map(|(id, v)| Group {
            name: name_of(&sources, &id),
            median: median(v),
        })
        .collect();
    by_source.sort_by(|a, b| a.name.cmp(&b.name));
    let mut by_manager: Vec<Group> = per_author
        .into_iter()
        .map(|(id, v)| Group {
            name: users.get(&id).cloned().unwrap_or_default(),
            median: median(v),
        })
        .collect();
    by_manager.sort_by(|a, b| a.name.cmp(&b.name));

    // Inbound messages per source per company day: finished days kept in `inbound_days`, so
    // at most a day of messages is counted per render.
    let mut lines: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for (source, day, n) in
        chatter_store::figures::inbound_per_day(db, &core.db, company.0, since, PERIOD_DAYS, now)
            .await?
    {
        if (0..PERIOD_DAYS).contains(&day) {
            lines
                .entry(source)
                .or_insert_with(|| vec![0; PERIOD_DAYS as usize])[day as usize] += n;
        }
    }
    let mut series: Vec<Series> = lines
        .into_iter()
        .map(|(id, per_day)| Series {
            name: name_of(&sources, &id),
            per_day,
        })
        .collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(Dashboard {
        open,
        waiting,
        new_today,
        new_7_days,
        first_response: median(all),
        by_source,
        by_manager,
        since,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(vec![5, 1, 3]).ms, Some(3));
        assert_eq!(median(vec![4, 1, 3, 2]).ms, Some(2));
        assert_eq!(median(vec![]), Median::default());
    }

    #[test]
    fn the_company_day_starts_at_its_own_midnight() {
        let msk = 3 * 3600 * 1000;
        // 2026-01-01T22:30Z is 01:30 on 2 January in Moscow.
        let t = 1_767_306_600_000;
        assert_eq!(midnight(t, msk), 1_767_301_200_000); // 2026-01-01T21:00Z
        assert_eq!(offset_ms("Europe/Moscow", t), msk);
        assert_eq!(offset_ms("no/such zone", t), msk);
    }
}
