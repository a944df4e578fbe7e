//! Working hours (requirement R5.2): a company's week, or one source's, with breaks, holidays
//! and one-off days such as a short 31 December, read in its own time zone; and whether it is
//! open at an instant, and until when.
//!
//! Times are minutes after local midnight; `24:00` may end a span. A day's spans are sorted and
//! never overlap (touching is fine: `09:00–13:00, 13:00–18:00` is one stretch). A one-off day
//! replaces its weekday's spans; a one-off day without spans is a holiday.

use crate::values::FieldError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The days a week has, Monday first, as the form and the API name them.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// How far ahead "closed until …" looks: a year and a bit, past every one-off day one can set.
const HORIZON_DAYS: i64 = 400;

/// At most this many one-off days (a year of them, every day).
pub const MAX_DAYS: usize = 366;

/// At most this many spans in a day.
pub const MAX_SPANS: usize = 12;

/// One stretch of a day, `[from, to)` in minutes after local midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub from: u16,
    pub to: u16,
}

/// A date with its own spans (none: closed all day).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    pub date: NaiveDate,
    pub spans: Vec<Span>,
}

/// A week of hours in a time zone, with one-off days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hours {
    /// An IANA time zone, e.g. `Europe/Moscow`.
    pub zone: String,
    /// Monday first.
    pub week: [Vec<Span>; 7],
    /// Sorted by date, each date once.
    #[serde(default)]
    pub days: Vec<Day>,
}

/// Whether the hours are open at an instant, and when that changes (`None`: not within the
/// next year — always open, or never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Now {
    Open { until: Option<DateTime<Utc>> },
    Closed { until: Option<DateTime<Utc>> },
}

impl Now {
    pub fn is_open(self) -> bool {
        matches!(self, Now::Open { .. })
    }

    pub fn until(self) -> Option<DateTime<Utc>> {
        match self {
            Now::Open { until } | Now::Closed { until } => until,
        }
    }
}

/// `HH:MM` of a minute of the day.
pub fn clock(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl Span {
    /// `09:00–18:00`.
    pub fn text(self) -> String {
        format!("{}–{}", clock(self.from), clock(self.to))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire {
            from: String,
            to: String,
        }
        Wire {
            from: clock(self.from),
            to: clock(self.to),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            from: String,
            to: String,
        }
        let w = Wire::deserialize(d)?;
        let (from, to) = (parse_time(&w.from), parse_time(&w.to));
        match (from, to) {
            (Some(from), Some(to)) => Ok(Span { from, to }),
            _ => Err(serde::de::Error::custom(
                "a time is written HH:MM, from 00:00 to 24:00",
            )),
        }
    }
}

/// `9`, `9:30`, `09:30`, `24:00` → minutes after midnight.
pub fn parse_time(s: &str) -> Option<u16> {
    let s = s.trim();
    let (h, m) = match s.split_once([':', '.']) {
        Some((h, m)) if m.len() == 2 => (h, m),
        Some(_) => return None,
        None => (s, "00"),
    };
    if h.is_empty() || h.len() > 2 || !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// Checks one day's spans: each ends after it starts and within the day, none overlaps
/// another; sorts them. The error is a translation key.
fn check_spans(spans: &mut [Span]) -> Result<(), &'static str> {
    if spans.len() > MAX_SPANS {
        return Err("hours.err_too_many");
    }
    if spans.iter().any(|s| s.to > 24 * 60) {
        return Err("hours.err_time");
    }
    if spans.iter().any(|s| s.from >= s.to) {
        return Err("hours.err_order");
    }
    spans.sort();
    if spans.windows(2).any(|w| w[0].to > w[1].from) {
        return Err("hours.err_overlap");
    }
    Ok(())
}

/// A day as a person writes it: `09:00–13:00, 14:00–18:00` (breaks between spans; `-`, `–` or
/// `—`; commas or semicolons); empty is a day off.
pub fn parse_spans(text: &str) -> Result<Vec<Span>, &'static str> {
    let mut out = Vec::new();
    for part in text
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (a, b) = part.split_once(['-', '–', '—']).ok_or("hours.err_time")?;
        let from = parse_time(a).ok_or("hours.err_time")?;
        let to = parse_time(b).ok_or("hours.err_time")?;
        out.push(Span { from, to });
    }
    check_spans(&mut out)?;
    Ok(out)
}

/// A day's spans as [`parse_spans`] reads them back.
pub fn spans_text(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| s.text())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One-off days as a person writes them, a line each: `2026-12-31 09:00–15:00` (a short day)
/// or `2027-01-01` (closed). The error names the line (1-based) in `limit`.
pub fn parse_days(text: &str) -> Result<Vec<Day>, FieldError> {
    let mut days: Vec<Day> = Vec::new();
    let at = |key, line: usize| FieldError {
        field: "days",
        key,
        limit: Some(line),
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (date, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(date, "%d.%m.%Y"))
            .map_err(|_| at("hours.err_date", i + 1))?;
        let spans = parse_spans(rest).map_err(|_| at("hours.err_day_spans", i + 1))?;
        if days.iter().any(|d| d.date == date) {
            return Err(at("hours.err_date_twice", i + 1));
        }
        days.push(Day { date, spans });
    }
    if days.len() > MAX_DAYS {
        return Err(FieldError {
            field: "days",
            key: "err.too_many",
            limit: Some(MAX_DAYS),
        });
    }
    days.sort_by_key(|d| d.date);
    Ok(days)
}

/// One-off days as [`parse_days`] reads them back.
pub fn days_text(days: &[Day]) -> String {
    days.iter()
        .map(|d| {
            if d.spans.is_empty() {
                d.date.to_string()
            } else {
                format!("{} {}", d.date, spans_text(&d.spans))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The form's fields: the zone, a line per weekday (`mon` … `sun`) and the one-off days.
pub struct HoursForm<'a> {
    pub zone: &'a str,
    pub week: [&'a str; 7],
    pub days: &'a str,
}

impl Hours {
    /// Reads the form; every refused field is named.
    pub fn from_form(f: &HoursForm) -> Result<Hours, Vec<FieldError>> {
        let mut errors = Vec::new();
        let zone = f.zone.trim();
        if zone.parse::<Tz>().is_err() {
            errors.push(FieldError::new("zone", "hours.err_zone"));
        }
        let mut week: [Vec<Span>; 7] = Default::default();
        for (i, text) in f.week.iter().enumerate() {
            match parse_spans(text) {
                Ok(s) => week[i] = s,
                Err(key) => errors.push(FieldError::new(WEEKDAYS[i], key)),
            }
        }
        let days = parse_days(f.days).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        if errors.is_empty() {
            Ok(Hours {
                zone: zone.to_owned(),
                week,
                days,
            })
        } else {
            Err(errors)
        }
    }

    /// Checks hours given whole (the API, or a stored document) and puts them in order.
    pub fn checked(mut self) -> Result<Hours, Vec<FieldError>> {
        let mut errors = Vec::new();
        self.zone = self.zone.trim().to_owned();
        if self.zone.parse::<Tz>().is_err() {
            errors.push(FieldError::new("zone", "hours.err_zone"));
        }
        for (i, spans) in self.week.iter_mut().enumerate() {
            if let Err(key) = check_spans(spans) {
                errors.push(FieldError::new(WEEKDAYS[i], key));
            }
        }
        if self.days.len() > MAX_DAYS {
            errors.push(FieldError {
                field: "days",
                key: "err.too_many",
                limit: Some(MAX_DAYS),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (i, d) in self.days.iter_mut().enumerate() {
            let key = if !seen.insert(d.date) {
                "hours.err_date_twice"
            } else if check_spans(&mut d.spans).is_err() {
                "hours.err_day_spans"
            } else {
                continue;
            };
            errors.push(FieldError {
                field: "days",
                key,
                limit: Some(i + 1),
            });
        }
        self.days.sort_by_key(|d| d.date);
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }

    /// The zone (Moscow for a stored zone this build does not know).
    pub fn tz(&self) -> Tz {
        self.zone.parse().unwrap_or(chrono_tz::Europe::Moscow)
    }

    /// The spans of a local date: its one-off day's, else its weekday's.
    pub fn spans_on(&self, date: NaiveDate) -> &[Span] {
        match self.days.binary_search_by_key(&date, |d| d.date) {
            Ok(i) => &self.days[i].spans,
            Err(_) => &self.week[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// The open stretches of a local date as instants, in order.
    fn stretches(
        &self,
        tz: Tz,
        date: NaiveDate,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        self.spans_on(date)
            .iter()
            .map(move |s| (instant(tz, date, s.from), instant(tz, date, s.to)))
    }

    /// Whether the hours are open at `at`, and until when.
    pub fn at(&self, at: DateTime<Utc>) -> Now {
        let tz = self.tz();
        let today = at.with_timezone(&tz).date_naive();
        // A stretch of yesterday may still run (a span ending at 24:00 touches today's).
        let mut open_until: Option<DateTime<Utc>> = None;
        for n in -1..HORIZON_DAYS {
            let date = today + Duration::days(n);
            for (from, to) in self.stretches(tz, date) {
                match open_until {
                    // Open: a stretch starting where the last ended carries on.
                    Some(end) if from <= end => open_until = Some(end.max(to)),
                    Some(end) => return Now::Open { until: Some(end) },
                    None if from <= at && at < to => open_until = Some(to),
                    None if from > at => return Now::Closed { until: Some(from) },
                    None => {}
                }
            }
        }
        match open_until {
            Some(_) => Now::Open { until: None },
            None => Now::Closed { until: None },
        }
    }
}

impl Hours {
    /// The instant at which `minutes` of open time have passed since `at` (breaks, nights,
    /// closed days and holidays do not count), or `None` if the hours never open again within
    /// the horizon. Open at `at` or not, counting starts at `at` or at the next opening.
    pub fn after_working(&self, at: DateTime<Utc>, minutes: u32) -> Option<DateTime<Utc>> {
        let mut left = Duration::minutes(i64::from(minutes));
        let mut t = at;
        // Each step crosses one open stretch or one closed gap; a year of stretches at most.
        for _ in 0..4 * HORIZON_DAYS {
            match self.at(t) {
                Now::Open { until: None } => return Some(t + left),
                Now::Open { until: Some(end) } => {
                    if t + left < end {
                        return Some(t + left);
                    }
                    left -= end - t;
                    t = end;
                    if left.is_zero() {
                        // The last working minute ends where the stretch does.
                        return Some(end - Duration::milliseconds(1));
                    }
                }
                Now::Closed { until: Some(opens) } => t = opens,
                Now::Closed { until: None } => return None,
            }
        }
        None
    }
}

/// A local minute of a date as an instant. A time the clocks skip (a spring-forward gap) is
/// read as the first instant after the gap; one they pass twice is the earlier.
fn instant(tz: Tz, date: NaiveDate, minute: u16) -> DateTime<Utc> {
    let local: NaiveDateTime =
        date.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(minute));
    let mut probe = local;
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form<'a>(week: [&'a str; 7], days: &'a str) -> HoursForm<'a> {
        HoursForm {
            zone: "Europe/Moscow",
            week,
            days,
        }
    }

    fn office() -> Hours {
        let five = "09:00–13:00, 14:00-18:00";
        Hours::from_form(&form(
            [five, five, five, five, five, "", ""],
            "2026-12-31 09:00-15:00\n01.01.2027",
        ))
        .expect("valid")
    }

    /// A Moscow wall-clock time as an instant (UTC+3 all year).
    fn msk(s: &str) -> DateTime<Utc> {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("time");
        Utc.from_utc_datetime(&(t - Duration::hours(3)))
    }

    #[test]
    fn open_in_a_stretch_until_its_break_and_closed_in_the_break_until_it_ends() {
        let h = office();
        // 2026-12-07 is a Monday.
        assert_eq!(
            h.at(msk("2026-12-07 10:00")),
            Now::Open {
                until: Some(msk("2026-12-07 13:00"))
            }
        );
        assert_eq!(
            h.at(msk("2026-12-07 13:30")),
            Now::Closed {
                until: Some(msk("2026-12-07 14:00"))
            }
        );
        // Friday evening: closed over the weekend until Monday morning.
        assert_eq!(
            h.at(msk("2026-12-11 18:00")),
            Now::Closed {
                until: Some(msk("2026-12-14 09:00"))
            }
        );
    }

    #[test]
    fn working_minutes_skip_breaks_nights_weekends_short_days_and_holidays() {
        let h = office();
        let after = |from: &str, m: u32| h.after_working(msk(from), m);
        // Inside a stretch: plain addition.
        assert_eq!(after("2026-12-07 10:00", 15), Some(msk("2026-12-07 10:15")));
        // Across the lunch break: 10 minutes before it, 5 after.
        assert_eq!(after("2026-12-07 12:50", 15), Some(msk("2026-12-07 14:05")));
        // Written in the break: counting starts when it ends.
        assert_eq!(after("2026-12-07 13:20", 15), Some(msk("2026-12-07 14:15")));
        // Friday 17:55 + 15 working minutes: Monday 09:10.
        assert_eq!(after("2026-12-11 17:55", 15), Some(msk("2026-12-14 09:10")));
        // Saturday night: Monday 09:15.
        assert_eq!(after("2026-12-12 23:00", 15), Some(msk("2026-12-14 09:15")));
        // 31 December closes at 15:00, 1 January is a holiday, 2 January a Saturday: Monday
        // 4 January 09:10.
        assert_eq!(after("2026-12-31 14:55", 15), Some(msk("2027-01-04 09:10")));
        // Exactly the rest of the stretch: the last moment of it, not the next morning.
        assert_eq!(
            after("2026-12-07 17:45", 15),
            Some(msk("2026-12-07 18:00") - Duration::milliseconds(1))
        );
        // A whole working day and a bit (8 h = 480 min, + 30).
        assert_eq!(
            after("2026-12-07 09:00", 510),
            Some(msk("2026-12-08 09:30"))
        );
        // Never open: never due.
        let never = Hours::from_form(&form(["", "", "", "", "", "", ""], "")).expect("valid");
        assert_eq!(never.after_working(msk("2026-12-07 10:00"), 5), None);
    }

    #[test]
    fn a_short_day_and_a_holiday_replace_their_weekdays() {
        let h = office();
        // Thursday 31 December closes at 15:00; Friday 1 January is a holiday.
        assert_eq!(
            h.at(msk("2026-12-31 14:00")),
            Now::Open {
                until: Some(msk("2026-12-31 15:00"))
            }
        );
        assert_eq!(
            h.at(msk("2026-12-31 16:00")),
            Now::Closed {
                until: Some(msk("2027-01-04 09:00"))
            }
        );
    }

    #[test]
    fn touching_stretches_across_midnight_are_one() {
        let all = "00:00-24:00";
        let h = Hours::from_form(&form(
            ["18:00-24:00", all, "00:00-02:00", "", "", "", ""],
            "",
        ))
        .expect("valid");
        assert_eq!(
            h.at(msk("2026-12-07 23:00")),
            Now::Open {
                until: Some(msk("2026-12-09 02:00"))
            }
        );
        let always = Hours::from_form(&form([all; 7], "")).expect("valid");
        assert_eq!(
            always.at(msk("2026-12-07 23:00")),
            Now::Open { until: None }
        );
        let never = Hours::from_form(&form([""; 7], "")).expect("valid");
        assert_eq!(
            never.at(msk("2026-12-07 23:00")),
            Now::Closed { until: None }
        );
    }

    #[test]
    fn read_in_the_hours_own_zone_across_a_daylight_saving_change() {
        // Berlin: 29 March 2026 the clocks go from 02:00 to 03:00 (UTC+1 → UTC+2).
        let mut h = Hours::from_form(&form([""; 7], "")).expect("valid");
        h.zone = "Europe/Berlin".into();
        h.week[6] = parse_spans("02:30-10:00").expect("spans");
        let sunday_before = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
        // 02:30 does not exist that night: opening is the first instant after the gap, 03:00
        // local = 01:00 UTC.
        assert_eq!(
            h.at(sunday_before),
            Now::Closed {
                until: Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap())
            }
        );
        // 10:00 local is 08:00 UTC after the change.
        assert_eq!(
            h.at(Utc.with_ymd_and_hms(2026, 3, 29, 5, 0, 0).unwrap()),
            Now::Open {
                until: Some(Utc.with_ymd_and_hms(2026, 3, 29, 8, 0, 0).unwrap())
            }
        );
    }

    #[test]
    fn each_bad_field_is_named_with_what_is_wrong() {
        let errs = Hours::from_form(&HoursForm {
            zone: "Europe/Atlantis",
            week: [
                "9-18",
                "18:00-09:00",
                "09:00-13:00, 12:00-18:00",
                "9 to 6",
                "25:00-26:00",
                "",
                "09:00-18:00",
            ],
            days: "2026-12-31 09:00-15:00\n2026-13-01\n31.12.2026",
        })
        .expect_err("invalid");
        let got: Vec<(&str, &str, Option<usize>)> =
            errs.iter().map(|e| (e.field, e.key, e.limit)).collect();
        assert_eq!(
            got,
            vec![
                ("zone", "hours.err_zone", None),
                ("tue", "hours.err_order", None),
                ("wed", "hours.err_overlap", None),
                ("thu", "hours.err_time", None),
                ("fri", "hours.err_time", None),
                ("days", "hours.err_date", Some(2)),
            ]
        );
        let twice = parse_days("2026-12-31\n31.12.2026 10:00-12:00").expect_err("twice");
        assert_eq!((twice.key, twice.limit), ("hours.err_date_twice", Some(2)));
        let short = parse_days("\n2026-12-31 15:00-09:00").expect_err("backwards");
        assert_eq!((short.key, short.limit), ("hours.err_day_spans", Some(2)));
        // Given whole (the API): the entry is counted in the list's order.
        let mut h = office();
        h.days.push(h.days[0].clone());
        let errs = h.checked().expect_err("twice");
        assert_eq!(
            errs.iter().map(|e| (e.key, e.limit)).collect::<Vec<_>>(),
            vec![("hours.err_date_twice", Some(3))]
        );
    }

    #[test]
    fn the_texts_read_back_as_the_same_hours_and_the_json_keeps_them() {
        let h = office();
        let week: Vec<String> = h.week.iter().map(|s| spans_text(s)).collect();
        let days = days_text(&h.days);
        assert_eq!(week[0], "09:00–13:00, 14:00–18:00");
        assert_eq!(days, "2026-12-31 09:00–15:00\n2027-01-01");
        let again = Hours::from_form(&HoursForm {
            zone: &h.zone,
            week: std::array::from_fn(|i| week[i].as_str()),
            days: &days,
        })
        .expect("valid");
        assert_eq!(again, h);
        let json = serde_json::to_string(&h).expect("json");
        assert!(json.contains(r#"{"from":"09:00","to":"13:00"}"#), "{json}");
        let back: Hours = serde_json::from_str(&json).expect("read");
        assert_eq!(back.checked().expect("valid"), h);
    }
}
