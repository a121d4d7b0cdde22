//! The zone a story's times are shown in, and the one format its pages use for them:
//! `14:34 BST, 10 May 2013`, or `10 May 2013 (time approximate)` for an inferred time.
//!
//! The story page's script formats live entries with the same rules (`render::html`'s
//! `TIME_SCRIPT`); `tests/page.rs` runs both over the same instants and compares the text.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::{OffsetName, Tz};
use std::collections::BTreeMap;

/// Where a story happens: a fixed UTC offset (`utc_offset = "+01:00"`) or an IANA zone
/// (`timezone = "Europe/London"`, whose offset and abbreviation follow the date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(Tz),
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::Fixed(Utc.fix())
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The label of an offset with no name: `UTC`, `UTC+01:00`, `UTC-05:30`.
fn offset_label(minutes: i32) -> String {
    if minutes == 0 {
        return "UTC".to_string();
    }
    let sign = if minutes < 0 { '-' } else { '+' };
    let a = minutes.abs();
    format!("UTC{sign}{:02}:{:02}", a / 60, a % 60)
}

impl Zone {
    /// An IANA zone name (`Europe/London`), if the zone database knows it.
    pub fn named(name: &str) -> Option<Zone> {
        name.parse::<Tz>().ok().map(Zone::Named)
    }

    /// The IANA name, for a named zone.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Zone::Named(tz) => Some(tz.name()),
            Zone::Fixed(_) => None,
        }
    }

    /// The offset east of UTC, in seconds, at `t`.
    pub fn offset_at(&self, t: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Fixed(off) => *off,
            Zone::Named(tz) => tz.offset_from_utc_datetime(&t.naive_utc()).fix(),
        }
    }

    /// The wall time at `t`, its offset in minutes and the offset's label (`BST`).
    fn local(&self, t: DateTime<Utc>) -> (NaiveDateTime, i32, String) {
        match self {
            Zone::Fixed(off) => {
                let minutes = off.local_minus_utc() / 60;
                (
                    t.with_timezone(off).naive_local(),
                    minutes,
                    offset_label(minutes),
                )
            }
            Zone::Named(tz) => {
                let local = t.with_timezone(tz);
                let minutes = local.offset().fix().local_minus_utc() / 60;
                let label = local
                    .offset()
                    .abbreviation()
                    .map_or_else(|| offset_label(minutes), str::to_string);
                (local.naive_local(), minutes, label)
            }
        }
    }

    /// The day of `t` in this zone: `10 May 2013`.
    pub fn day(&self, t: DateTime<Utc>) -> String {
        let (l, _, _) = self.local(t);
        format!("{} {} {}", l.day(), MONTHS[l.month0() as usize], l.year())
    }

    /// The day of `t` in this zone as an HTML date: `2013-05-10`.
    pub fn iso_day(&self, t: DateTime<Utc>) -> String {
        self.local(t).0.format("%Y-%m-%d").to_string()
    }

    /// The exact time of `t` in this zone: `14:34 BST, 10 May 2013`.
    pub fn exact(&self, t: DateTime<Utc>) -> String {
        let (l, _, label) = self.local(t);
        format!(
            "{:02}:{:02} {label}, {} {} {}",
            l.hour(),
            l.minute(),
            l.day(),
            MONTHS[l.month0() as usize],
            l.year()
        )
    }

    /// The clock time of `t` in this zone: `14:34` (the "Updated" mark of an edited entry).
    pub fn clock(&self, t: DateTime<Utc>) -> String {
        let (l, _, _) = self.local(t);
        format!("{:02}:{:02}", l.hour(), l.minute())
    }

    /// What a page shows for a time: the exact time, or only the day for an inferred one.
    pub fn shown(&self, t: DateTime<Utc>, inferred: bool) -> String {
        if inferred {
            format!("{} (time approximate)", self.day(t))
        } else {
            self.exact(t)
        }
    }

    /// The labels of the offsets this zone uses from the year before `from` to twenty years
    /// after `to`, by offset in minutes: what the page's script needs to name an offset the
    /// way [`Zone::exact`] does (browsers' own zone abbreviations differ by locale). Later
    /// rules win when one offset had two names.
    pub fn labels(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<i32, String> {
        let mut out = BTreeMap::new();
        if let Zone::Fixed(off) = self {
            let minutes = off.local_minus_utc() / 60;
            out.insert(minutes, offset_label(minutes));
            return out;
        }
        let (first, last) = (from.year() - 1, to.max(from).year() + 20);
        for year in first..=last {
            for month in 1..=12 {
                for day in [1, 15] {
                    if let Some(t) = Utc.with_ymd_and_hms(year, month, day, 12, 0, 0).single() {
                        let (_, minutes, label) = self.local(t);
                        out.insert(minutes, label);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn london_switches_between_bst_and_gmt_by_date() {
        let london = Zone::named("Europe/London").unwrap();
        assert_eq!(
            london.exact(at("2013-05-10T13:34:00Z")),
            "14:34 BST, 10 May 2013"
        );
        assert_eq!(
            london.exact(at("2013-12-01T09:05:00Z")),
            "09:05 GMT, 1 December 2013"
        );
        // The night the clocks went back: 01:59 BST is followed by 01:00 GMT.
        assert_eq!(
            london.exact(at("2013-10-27T00:59:00Z")),
            "01:59 BST, 27 October 2013"
        );
        assert_eq!(
            london.exact(at("2013-10-27T01:00:00Z")),
            "01:00 GMT, 27 October 2013"
        );
        // Late in the evening UTC is the next day in BST.
        assert_eq!(london.day(at("2013-05-10T23:30:00Z")), "11 May 2013");
        assert_eq!(london.iso_day(at("2013-05-10T23:30:00Z")), "2013-05-11");
        let labels = london.labels(at("2013-05-10T00:00:00Z"), at("2013-05-11T00:00:00Z"));
        assert_eq!(
            labels,
            BTreeMap::from([(0, "GMT".to_string()), (60, "BST".to_string())])
        );
        assert!(Zone::named("Europe/Londres").is_none());
    }

    #[test]
    fn fixed_offsets_are_named_by_their_offset() {
        let utc = Zone::default();
        assert_eq!(
            utc.exact(at("2013-05-10T13:34:59Z")),
            "13:34 UTC, 10 May 2013"
        );
        let india = Zone::Fixed(FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
        assert_eq!(
            india.exact(at("2013-05-10T20:00:00Z")),
            "01:30 UTC+05:30, 11 May 2013"
        );
        let west = Zone::Fixed(FixedOffset::west_opt(3 * 3600).unwrap());
        assert_eq!(
            west.exact(at("2013-05-10T02:00:00Z")),
            "23:00 UTC-03:00, 9 May 2013"
        );
        assert_eq!(
            west.labels(at("2013-05-10T00:00:00Z"), at("2013-05-10T00:00:00Z")),
            BTreeMap::from([(-180, "UTC-03:00".to_string())])
        );
    }

    #[test]
    fn an_inferred_time_shows_only_its_day() {
        let london = Zone::named("Europe/London").unwrap();
        let t = at("2013-05-10T22:00:00Z");
        assert_eq!(london.shown(t, true), "10 May 2013 (time approximate)");
        assert_eq!(london.shown(t, false), "23:00 BST, 10 May 2013");
    }
}
