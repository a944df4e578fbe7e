//! Metering: what a company used in a billing period, counted from the stored messages on
//! read. The rule: every message received from a customer (counted when it is stored,
//! `created_at`) and every message sent to one (counted when the messenger took it, `sent_at`
//! of an outgoing message), automatic replies included; internal notes (their own table) are
//! not messages and never count, nor is a reply that is still pending, held or failed.
//!
//! Counted, not kept as a counter, so it is exact by construction: a message is one row
//! (unique on source and provider id, so a replayed webhook stores nothing), a reply whose
//! send failed with a 5xx and then succeeded is still one row with one `sent_at`, and nothing
//! depends on which node stored or sent it or whether it died midway. A period is at most a
//! month of one company's messages, read through `ix_messages_company_created` and
//! `ix_messages_company_sent` (m0040).

use super::DAY_MS;
use crate::Result;
use chatter_store::stmt;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

/// What a company used in `[start, end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// Messages in the period.
    pub total: i64,
    /// Per source: (source, messages).
    pub per_source: Vec<(Uuid, i64)>,
    /// Per day of the period (day 0 starts at `start`).
    pub daily: Vec<i64>,
}

const PER_DAY: &str = "SELECT source_id, day, count(*) AS n FROM ( \
     SELECT source_id, (created_at - $2) / $4 AS day FROM messages \
     WHERE company_id = $1 AND direction = 'in' AND created_at >= $2 AND created_at < $3 \
     UNION ALL \
     SELECT source_id, (sent_at - $2) / $4 AS day FROM messages \
     WHERE company_id = $1 AND direction = 'out' AND sent_at >= $2 AND sent_at < $3 \
     ) AS t GROUP BY source_id, day";

const TOTAL: &str = "SELECT \
     (SELECT count(*) FROM messages WHERE company_id = $1 AND direction = 'in' \
      AND created_at >= $2 AND created_at < $3) + \
     (SELECT count(*) FROM messages WHERE company_id = $1 AND direction = 'out' \
      AND sent_at >= $2 AND sent_at < $3) AS n";

/// The messages company `company` used in `[start, end)`.
pub async fn total(
    conn: &impl ConnectionTrait,
    company: Uuid,
    start: i64,
    end: i64,
) -> Result<i64> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            TOTAL,
            vec![company.into(), start.into(), end.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64>("", "n")?,
        None => 0,
    })
}

/// The messages company `company` used in `[start, end)`, per source and per day.
pub async fn count(
    conn: &impl ConnectionTrait,
    company: Uuid,
    start: i64,
    end: i64,
) -> Result<Counted> {
    let rows = conn
        .query_all(stmt(
            conn.get_database_backend(),
            PER_DAY,
            vec![company.into(), start.into(), end.into(), DAY_MS.into()],
        ))
        .await?;
    let days = usize::try_from((end - start + DAY_MS - 1) / DAY_MS).unwrap_or(0);
    let mut out = Counted {
        daily: vec![0; days],
        ..Counted::default()
    };
    for r in rows {
        let source: Uuid = r.try_get("", "source_id")?;
        let day: i64 = r.try_get("", "day")?;
        let n: i64 = r.try_get("", "n")?;
        out.total += n;
        if let Some(d) = usize::try_from(day).ok().and_then(|d| out.daily.get_mut(d)) {
            *d += n;
        }
        match out.per_source.iter_mut().find(|(s, _)| *s == source) {
            Some((_, m)) => *m += n,
            None => out.per_source.push((source, n)),
        }
    }
    out.per_source
        .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// The period's use at its end if it goes on as it went so far: the average per elapsed day
/// (at least one) times the period's days.
pub fn forecast(used: i64, start: i64, end: i64, now: i64) -> i64 {
    let elapsed = (now.clamp(start, end) - start).max(DAY_MS);
    let length = (end - start).max(DAY_MS);
    // i128: a long period times a large count does not overflow.
    i64::try_from(i128::from(used) * i128::from(length) / i128::from(elapsed)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forecast_scales_the_days_so_far_to_the_whole_period() {
        let start = 0;
        let end = 30 * DAY_MS;
        assert_eq!(forecast(100, start, end, 10 * DAY_MS), 300);
        // Less than a day in: counted as one day, not as a flood.
        assert_eq!(forecast(10, start, end, 3_600_000), 300);
        // After the end: what was used.
        assert_eq!(forecast(500, start, end, 40 * DAY_MS), 500);
        assert_eq!(forecast(0, start, end, 5 * DAY_MS), 0);
    }
}
