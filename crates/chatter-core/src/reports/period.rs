//! The reports page: over a chosen period of company days (at most a year), the first-response
//! and resolution times (median and 90th percentile) overall, per source and per manager,
//! conversations per day and messages in and out; and the same as CSV.
//!
//! Definitions (the same as the dashboard's):
//! - a conversation *belongs to the period* when its first customer message falls in it;
//! - its *first response* is the first message sent to the customer after that one (by anyone:
//!   a manager here, in amoCRM or through the API); the manager of a conversation is the one who
//!   sent that first response;
//! - it is *resolved* when it is first closed after that message (the `conversation.close`
//!   entries of the audit log); a conversation reopened and closed again counts its first close;
//! - messages in and out are counted by the day they were stored, over the period.
//!
//! Days are the company's calendar days in its time zone (the offset of the period's start, so
//! a zone that changes its clock inside the period shifts that part by the hour).

use super::{offset_ms, DAY_MS};
use crate::{Actor, Core, CoreError, Result};
use chatter_domain::{Direction, Permission};
use chatter_store::entity::company;
use chatter_store::stmt;
use chrono::NaiveDate;
use sea_orm::{ConnectionTrait, EntityTrait};
use std::collections::HashMap;
use uuid::Uuid;

/// The longest period a report covers, in days.
pub const MAX_DAYS: i64 = 366;
/// The period when none is given: the last 30 days, today included.
pub const DEFAULT_DAYS: i64 = 30;

/// Times over some conversations: how many, their median and 90th percentile (nearest rank).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub count: usize,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

impl Times {
    fn of(mut v: Vec<i64>) -> Times {
        v.sort_unstable();
        let n = v.len();
        if n == 0 {
            return Times::default();
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        };
        // Nearest rank: the smallest value with at least 90% of the values at or below it.
        let rank = (n * 9).div_ceil(10).max(1);
        Times {
            count: n,
            median_ms: Some(median),
            p90_ms: Some(v[rank - 1]),
        }
    }
}

/// One line of a report: everything, a source or a manager.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Line {
    /// The source's or the manager's name; empty for the whole company.
    pub name: String,
    /// Conversations of the period (for a manager: those they answered first).
    pub conversations: i64,
    pub first_response: Times,
    pub resolution: Times,
    /// Customer messages stored in the period (for a manager: 0, customers write to sources).
    pub messages_in: i64,
    /// Messages sent to customers in the period (for a manager: those they wrote).
    pub messages_out: i64,
}

/// One company day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Conversations whose first customer message came that day.
    pub conversations: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The first day, `YYYY-MM-DD`.
    pub from: String,
    /// The last day (included), `YYYY-MM-DD`.
    pub to: String,
    pub total: Line,
    pub by_source: Vec<Line>,
    pub by_manager: Vec<Line>,
    pub days: Vec<Day>,
}

/// The period `from`..=`to` (`YYYY-MM-DD`, either may be empty for the default: the 30 days
/// ending today, or ending `to`, or starting `from`), checked: real dates, `from` not after
/// `to`, at most a year.
pub fn period(from: &str, to: &str, today: NaiveDate) -> Result<(NaiveDate, NaiveDate)> {
    let parse = |field: &'static str, s: &str| -> Result<Option<NaiveDate>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| CoreError::field(field, "err.report_date"))
    };
    let (f, t) = (parse("from", from)?, parse("to", to)?);
    let span = chrono::Days::new((DEFAULT_DAYS - 1) as u64);
    let (f, t) = match (f, t) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, f.checked_add_days(span).unwrap_or(f)),
        (None, Some(t)) => (t.checked_sub_days(span).unwrap_or(t), t),
        (None, None) => (today.checked_sub_days(span).unwrap_or(today), today),
    };
    if f > t {
        return Err(CoreError::field("to", "err.report_order"));
    }
    if (t - f).num_days() + 1 > MAX_DAYS {
        return Err(CoreError::field("to", "err.report_too_long"));
    }
    Ok((f, t))
}

/// The company's "today" in its time zone.
pub async fn today(core: &Core, actor: &Actor) -> Result<NaiveDate> {
    let tz = company_tz(core, actor).await?;
    let now = core.now();
    let offset = offset_ms(&tz, now);
    Ok(chrono::DateTime::from_timestamp_millis(now + offset)
        .map(|t| t.date_naive())
        .unwrap_or_default())
}

async fn company_tz(core: &Core, actor: &Actor) -> Result<String> {
    Ok(company::Entity::find_by_id(actor.company_id)
        .one(&core.read)
        .await?
        .map(|c| c.timezone)
        .unwrap_or_default())
}

/// The report of `from`..=`to` (see [`period`]). Owners and admins.
pub async fn report(core: &Core, actor: &Actor, from: &str, to: &str) -> Result<Report> {
    actor.require(Permission::Manage)?;
    let today = today(core, actor).await?;
    let (first, last) = period(from, to, today)?;
    let tz = company_tz(core, actor).await?;
    let midnight_utc = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
    };
    let start_utc = midnight_utc(first).unwrap_or(0);
    let offset = offset_ms(&tz, start_utc);
    let start = start_utc - offset;
    let days = (last - first).num_days() + 1;
    let end = start + days * DAY_MS;
    let db = &core.read;
    let b = db.get_database_backend();
    let company = actor.company_id;

    // The period's conversations: first customer message, first response and its author, as
    // kept on the conversation (`chatter_store::figures`).
    let rows = db
        .query_all(stmt(
            b,
            "SELECT id, source_id, first_in_at AS first_in, first_response_at AS first_out, \
             first_responder_id AS author_id FROM conversations \
             WHERE company_id = $1 AND first_in_at >= $2 AND first_in_at < $3",
            vec![company.into(), start.into(), end.into()],
        ))
        .await?;
    // When each conversation was closed (every close since the period began, oldest first).
    let closes = db
        .query_all(stmt(
            b,
            "SELECT target, created_at FROM audit_log WHERE company_id = $1 \
             AND action = 'conversation.close' AND created_at >= $2 ORDER BY created_at",
            vec![company.into(), start.into()],
        ))
        .await?;
    let mut closed: HashMap<String, Vec<i64>> = HashMap::new();
    for r in closes {
        let target: String = r.try_get("", "target")?;
        closed
            .entry(target)
            .or_default()
            .push(r.try_get("", "created_at")?);
    }

    #[derive(Default)]
    struct Acc {
        conversations: i64,
        first: Vec<i64>,
        resolved: Vec<i64>,
        messages_in: i64,
        messages_out: i64,
    }
    impl Acc {
        fn line(self, name: String) -> Line {
            Line {
                name,
                conversations: self.conversations,
                first_response: Times::of(self.first),
                resolution: Times::of(self.resolved),
                messages_in: self.messages_in,
                messages_out: self.messages_out,
            }
        }
    }
    let mut total = Acc::default();
    let mut per_source: HashMap<Uuid, Acc> = HashMap::new();
    let mut per_manager: HashMap<Uuid, Acc> = HashMap::new();
    let mut per_day = vec![Day::default(); days as usize];
    for r in rows {
        let id: Uuid = r.try_get("", "id")?;
        let source: Uuid = r.try_get("", "source_id")?;
        let first_in: i64 = r.try_get("", "first_in")?;
        let first_out: Option<i64> = r.try_get("", "first_out")?;
        let author: Option<Uuid> = r.try_get("", "author_id")?;
        let resolved = closed
            .get(&id.to_string())
            .and_then(|v| v.iter().find(|&&t| t >= first_in))
            .map(|t| t - first_in);
        let day = ((first_in - start) / DAY_MS) as usize;
        if let Some(d) = per_day.get_mut(day) {
            d.conversations += 1;
        }
        let add = |a: &mut Acc| {
            a.conversations += 1;
            a.first.extend(first_out.map(|o| o - first_in));
            a.resolved.extend(resolved);
        };
        add(&mut total);
        add(per_source.entry(source).or_default());
        if let Some(m) = author {
            add(per_manager.entry(m).or_default());
        }
    }

    // Messages in and out per source, per author and per day.
    let rows = db
        .query_all(stmt(
            b,
            "SELECT source_id, author_id, direction, (created_at - $2) / $4 AS day, count(*) AS n \
             FROM messages WHERE company_id = $1 AND direction IN ('in', 'out') \
             AND created_at >= $2 AND created_at < $3 \
             GROUP BY source_id, author_id, direction, 4",
            vec![company.into(), start.into(), end.into(), DAY_MS.into()],
        ))
        .await?;
    for r in rows {
        let source: Uuid = r.try_get("", "source_id")?;
        let author: Option<Uuid> = r.try_get("", "author_id")?;
        let inbound = r.try_get::<Direction>("", "direction")?.is_in();
        let day: i64 = r.try_get("", "day")?;
        let n: i64 = r.try_get("", "n")?;
        let count = |a: &mut Acc| {
            if inbound {
                a.messages_in += n;
            } else {
                a.messages_out += n;
            }
        };
        count(&mut total);
        count(per_source.entry(source).or_default());
        if let (false, Some(m)) = (inbound, author) {
            count(per_manager.entry(m).or_default());
        }
        if let Some(d) = usize::try_from(day).ok().and_then(|i| per_day.get_mut(i)) {
            if inbound {
                d.messages_in += n;
            } else {
                d.messages_out += n;
            }
        }
    }
    for (i, d) in per_day.iter_mut().enumerate() {
        d.date = first
            .checked_add_days(chrono::Days::new(i as u64))
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
    }

    let sources = super::source_names(db, company).await?;
    let users = super::user_names(db, per_manager.keys().copied()).await?;
    let lines = |m: HashMap<Uuid, Acc>, names: &dyn Fn(&Uuid) -> String| {
        let mut v: Vec<Line> = m.into_iter().map(|(id, a)| a.line(names(&id))).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    Ok(Report {
        from: first.format("%Y-%m-%d").to_string(),
        to: last.format("%Y-%m-%d").to_string(),
        total: total.line(String::new()),
        by_source: lines(per_source, &|id| {
            sources.get(id).cloned().unwrap_or_default()
        }),
        by_manager: lines(per_manager, &|id| {
            users.get(id).cloned().unwrap_or_default()
        }),
        days: per_day,
    })
}

/// The report as CSV, one table: a `group` column (`total`, `source`, `manager`, `day`), the
/// line's name or date, then the figures (times in whole seconds; empty where none).
pub fn to_csv(r: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| CoreError::Internal(e.to_string());
    w.write_record([
        "group",
        "name",
        "date",
        "conversations",
        "messages_in",
        "messages_out",
        "first_response_median_s",
        "first_response_p90_s",
        "resolution_median_s",
        "resolution_p90_s",
    ])
    .map_err(internal)?;
    let secs = |ms: Option<i64>| ms.map(|m| (m / 1000).to_string()).unwrap_or_default();
    let line = |group: &str, l: &Line| -> Vec<String> {
        vec![
            group.into(),
            crate::audit::cell(&l.name),
            String::new(),
            l.conversations.to_string(),
            l.messages_in.to_string(),
            l.messages_out.to_string(),
            secs(l.first_response.median_ms),
            secs(l.first_response.p90_ms),
            secs(l.resolution.median_ms),
            secs(l.resolution.p90_ms),
        ]
    };
    w.write_record(line("total", &r.total)).map_err(internal)?;
    for l in &r.by_source {
        w.write_record(line("source", l)).map_err(internal)?;
    }
    for l in &r.by_manager {
        w.write_record(line("manager", l)).map_err(internal)?;
    }
    for d in &r.days {
        w.write_record([
            "day",
            "",
            &d.date,
            &d.conversations.to_string(),
            &d.messages_in.to_string(),
            &d.messages_out.to_string(),
            "",
            "",
            "",
            "",
        ])
        .map_err(internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| CoreError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn medians_and_nearest_rank_p90() {
        let t = Times::of((1..=10).collect());
        assert_eq!((t.count, t.median_ms, t.p90_ms), (10, Some(5), Some(9)));
        let t = Times::of(vec![7]);
        assert_eq!((t.median_ms, t.p90_ms), (Some(7), Some(7)));
        let t = Times::of(vec![30, 10, 20]);
        assert_eq!((t.median_ms, t.p90_ms), (Some(20), Some(30)));
        assert_eq!(Times::of(vec![]), Times::default());
    }

    #[test]
    fn periods_default_check_order_and_length() {
        let today = d("2026-12-06");
        assert_eq!(period("", "", today).ok(), Some((d("2026-11-07"), today)));
        assert_eq!(
            period("2026-01-01", "", today).ok(),
            Some((d("2026-01-01"), d("2026-01-30")))
        );
        assert_eq!(
            period("2025-12-06", "2026-12-05", today).ok(),
            Some((d("2025-12-06"), d("2026-12-05")))
        );
        let field = |r: Result<(NaiveDate, NaiveDate)>| match r {
            Err(CoreError::Invalid(e)) => (e[0].field.to_string(), e[0].key.to_string()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(period("2026-13-01", "", today)),
            ("from".into(), "err.report_date".into())
        );
        assert_eq!(
            field(period("2026-02-01", "2026-01-01", today)),
            ("to".into(), "err.report_order".into())
        );
        assert_eq!(
            field(period("2025-01-01", "2026-01-02", today)),
            ("to".into(), "err.report_too_long".into())
        );
    }

    #[test]
    fn csv_has_one_table_and_no_formulas() {
        let r = Report {
            from: "2026-01-01".into(),
            to: "2026-01-01".into(),
            total: Line {
                conversations: 2,
                first_response: Times::of(vec![60_000, 120_000]),
                ..Line::default()
            },
            by_source: vec![Line {
                name: "=HYPERLINK(\"x\")".into(),
                ..Line::default()
            }],
            by_manager: vec![],
            days: vec![Day {
                date: "2026-01-01".into(),
                conversations: 2,
                messages_in: 3,
                messages_out: 1,
            }],
        };
        let csv = to_csv(&r).expect("csv");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert_eq!(lines[1], "total,,,2,0,0,90,120,,");
        assert!(lines[2].starts_with("source,\"'=HYPERLINK"), "{csv}");
        assert_eq!(lines[3], "day,,2026-01-01,2,3,1,,,,");
    }
}
