//! Entry times: time lines in reports (`2:34pm`, `14:34`, `10 May 2013 at 2:34pm`) and the
//! deterministic inference of the times nobody wrote down.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};

/// A time line as written: a time of day, maybe with a date and a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLine {
    pub date: Option<NaiveDate>,
    pub time: NaiveTime,
    /// An explicit zone (`GMT`, `BST`, `UTC`) overrides the story's offset.
    pub offset: Option<FixedOffset>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS
        .iter()
        .zip(full.iter())
        .position(|(short, long)| w == *short || w == *long || (w == "sept" && *short == "sep"))
        .map(|i| i as u32 + 1)
}

fn day(word: &str) -> Option<u32> {
    let w = word.trim_end_matches(',');
    let w = w
        .strip_suffix("st")
        .or_else(|| w.strip_suffix("nd"))
        .or_else(|| w.strip_suffix("rd"))
        .or_else(|| w.strip_suffix("th"))
        .unwrap_or(w);
    w.parse().ok().filter(|d| (1..=31).contains(d))
}

fn is_weekday(word: &str) -> bool {
    let w = word.trim_end_matches(['.', ',']).to_ascii_lowercase();
    w.len() >= 3
        && [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ]
        .iter()
        .any(|d| d.starts_with(&w))
}

/// `25 March` or `March 25`.
fn day_month(a: &str, b: &str) -> bool {
    (day(a).is_some() && month(b).is_some()) || (month(a).is_some() && day(b).is_some())
}

/// A line that is only a date (`Wednesday 25 March`, `25 March 2025`, `March 25, 2025`):
/// a rule between days on a live page.
pub fn is_date_line(line: &str) -> bool {
    let mut words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    if words.first().is_some_and(|w| is_weekday(w)) {
        words.remove(0);
    }
    let year = |w: &str| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit());
    match words.as_slice() {
        [] => line.split_whitespace().count() == 1 && is_weekday(line.trim()),
        [a, b] => day_month(a, b),
        [a, b, y] => day_month(a, b) && year(y),
        _ => false,
    }
}

/// Parses `2:34pm`, `2.34 pm`, `2pm`, `14:34`, `14.34`.
fn time_of_day(words: &[&str]) -> Option<NaiveTime> {
    // `2:05 p.m.`: the meridiem with its full stops.
    let joined: String = words
        .concat()
        .to_ascii_lowercase()
        .replace("a.m.", "am")
        .replace("p.m.", "pm");
    let (digits, meridiem) = if let Some(d) = joined.strip_suffix("am") {
        (d, Some(false))
    } else if let Some(d) = joined.strip_suffix("pm") {
        (d, Some(true))
    } else {
        (joined.as_str(), None)
    };
    let (hs, ms) = match digits.split_once([':', '.']) {
        Some((h, m)) => (h, Some(m)),
        None => (digits, None),
    };
    // `14:20:04`: the seconds add nothing a feed shows.
    let ms = ms.map(|m| match m.split_once(':') {
        Some((m, sec)) if sec.len() == 2 && sec.bytes().all(|b| b.is_ascii_digit()) => m,
        _ => m,
    });
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if hs.len() > 2 || !all_digits(hs) {
        return None;
    }
    let h: u32 = hs.parse().ok()?;
    let m: u32 = match ms {
        Some(m) if m.len() == 2 && all_digits(m) => m.parse().ok()?,
        None if meridiem.is_some() => 0,
        _ => return None,
    };
    if m > 59 {
        return None;
    }
    let h = match meridiem {
        Some(pm) if (1..=12).contains(&h) => (h % 12) + if pm { 12 } else { 0 },
        None if h <= 23 => h,
        _ => return None,
    };
    NaiveTime::from_hms_opt(h, m, 0)
}

fn zone(word: &str) -> Option<FixedOffset> {
    match word.to_ascii_uppercase().as_str() {
        "GMT" | "UTC" | "Z" => FixedOffset::east_opt(0),
        "BST" => FixedOffset::east_opt(3600),
        "CET" => FixedOffset::east_opt(3600),
        "CEST" => FixedOffset::east_opt(7200),
        "EST" => FixedOffset::east_opt(-5 * 3600),
        "EDT" => FixedOffset::east_opt(-4 * 3600),
        "CST" => FixedOffset::east_opt(-6 * 3600),
        "CDT" => FixedOffset::east_opt(-5 * 3600),
        "MST" => FixedOffset::east_opt(-7 * 3600),
        "MDT" => FixedOffset::east_opt(-6 * 3600),
        "PST" => FixedOffset::east_opt(-8 * 3600),
        "PDT" => FixedOffset::east_opt(-7 * 3600),
        _ => None,
    }
}

/// Recognises a line that is nothing but a time: `2:34pm`, `14:34`, `10 May 2013 at 2:34pm`,
/// `May 10, 2013 14:34`, optionally led by `Updated`/`Posted`/`Published` and followed by a
/// zone (`GMT`, `BST`, `UTC`).
pub fn parse_time_line(line: &str) -> Option<TimeLine> {
    let line = line.trim();
    if line.is_empty() || line.len() > 48 {
        return None;
    }
    let mut words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(first) = words.first() {
        let f = first.trim_end_matches(':').to_ascii_lowercase();
        if matches!(
            f.as_str(),
            "updated" | "posted" | "published" | "last" | "post"
        ) {
            words.remove(0);
            if words
                .first()
                .is_some_and(|w| w.eq_ignore_ascii_case("updated"))
            {
                words.remove(0);
            }
        }
    }
    words.retain(|w| !w.eq_ignore_ascii_case("at") && !matches!(*w, "-" | "|" | ":" | "on"));
    // `Tue 25 Mar 2025 14.22 GMT`, `08:12 Tuesday 14 April`: the day's name adds nothing to
    // its date, wherever it stands.
    words.retain(|w| !is_weekday(w));
    // The zone after the time, wherever the date stands (`14:05 GMT`, `4:18 a.m. ET Nov. 4,
    // 2026`).
    let mut offset = None;
    if let Some(at) = words
        .iter()
        .position(|w| zone(w).is_some() || matches!(*w, "ET" | "CT" | "MT" | "PT" | "UK"))
        .filter(|&at| at > 0)
    {
        // `2:05 p.m. ET`: a US zone without its season; the page's offset stands.
        offset = zone(words[at]);
        words.remove(at);
    }
    // Date first (`10 May 2013`, `May 10 2013`), then the time; or time then date.
    let date_of = |w: &[&str]| -> Option<NaiveDate> {
        match w {
            // Four-digit years only: `20201` or `13` is not a date a page carries (and a
            // year past 9999 cannot be written in an RSS date).
            [d, m, y] if y.len() == 4 => {
                let y: i32 = y.parse().ok()?;
                if let (Some(d), Some(m)) = (day(d), month(m)) {
                    NaiveDate::from_ymd_opt(y, m, d)
                } else if let (Some(m), Some(d)) = (month(d), day(m)) {
                    NaiveDate::from_ymd_opt(y, m, d)
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    // `14:05 25 March`, `25 Mar 14:05`: a day without its year names no date the page's
    // times can be placed by, only the time.
    let words: Vec<&str> = match words.as_slice() {
        [t, d, m] | [t, m, d] if day(d).is_some() && month(m).is_some() => vec![*t],
        [d, m, t] | [m, d, t] if day(d).is_some() && month(m).is_some() => vec![*t],
        _ => words,
    };
    let n = words.len();
    if n == 0 || n > 5 {
        return None;
    }
    for split in [0usize, 3] {
        if split > n {
            continue;
        }
        // date then time
        if split == 3 {
            if let Some(date) = date_of(&words[..3]) {
                if let Some(time) = time_of_day(&words[3..]) {
                    return Some(TimeLine {
                        date: Some(date),
                        time,
                        offset,
                    });
                }
            }
            // time then date
            if n >= 4 {
                for t in 1..=2 {
                    if n == t + 3 {
                        if let (Some(time), Some(date)) =
                            (time_of_day(&words[..t]), date_of(&words[t..]))
                        {
                            return Some(TimeLine {
                                date: Some(date),
                                time,
                                offset,
                            });
                        }
                    }
                }
            }
        } else if n <= 2 {
            if let Some(time) = time_of_day(&words) {
                return Some(TimeLine {
                    date: None,
                    time,
                    offset,
                });
            }
        }
    }
    None
}

/// `1405`: a time written as four digits, as some live pages stamp their entries.
fn hhmm(word: &str) -> Option<NaiveTime> {
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = (word[..2].parse().ok()?, word[2..].parse().ok()?);
    NaiveTime::from_hms_opt(h, m, 0)
}

/// Recognises a time stamp that opens a line of text: `1405: Police…`, `8.40am: …`,
/// `14:05 - …`. A line carrying more stamps (`10am: …, 3.30pm: …`) is a diary of the day,
/// which is body text, not an entry.
pub fn parse_time_prefix(line: &str) -> Option<(TimeLine, &str)> {
    let line = line.trim();
    for sep in [": ", " - ", " – ", " — ", " | "] {
        let Some((head, rest)) = line.split_once(sep) else {
            continue;
        };
        if head.len() > 16 || rest.trim().is_empty() {
            continue;
        }
        let time = match hhmm(head.trim()) {
            Some(time) => TimeLine {
                date: None,
                time,
                offset: None,
            },
            None => match parse_time_line(head) {
                Some(t) => t,
                None => continue,
            },
        };
        let more = rest.split_whitespace().any(|w| {
            w.strip_suffix(':')
                .is_some_and(|w| hhmm(w).is_some() || parse_time_line(w).is_some())
        });
        if more {
            return None;
        }
        return Some((time, rest.trim()));
    }
    // `11:20Road closed`: a page that set its time stamp right against the headline.
    let b = line.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let glued = Some(digits + 3)
        .filter(|_| (1..=2).contains(&digits))
        .filter(|&n| matches!(b.get(digits), Some(b':' | b'.')) && b.len() > n)
        .filter(|&n| b[digits + 1..n].iter().all(u8::is_ascii_digit))
        .filter(|&n| line[n..].starts_with(|c: char| c.is_ascii_uppercase()));
    if let Some(n) = glued {
        let time = time_of_day(&[&line[..n]])?;
        return Some((
            TimeLine {
                date: None,
                time,
                offset: None,
            },
            line[n..].trim(),
        ));
    }
    // `14:05 Kick-off at Northfield`: a clock time (with a colon or am/pm) and a capital.
    let (head, rest) = line.split_once(' ')?;
    let lower = head.to_ascii_lowercase();
    let clock = head.contains(':') || lower.ends_with("am") || lower.ends_with("pm");
    if !clock
        || !rest.starts_with(|c: char| c.is_uppercase())
        || rest.split_whitespace().count() < 2
    {
        return None;
    }
    let time = time_of_day(&[head])?;
    let more = rest.split_whitespace().any(|w| {
        let w = w.trim_end_matches([',', ';', ':']);
        (w.contains(':') || w.ends_with("am") || w.ends_with("pm")) && time_of_day(&[w]).is_some()
    });
    if more {
        return None;
    }
    Some((
        TimeLine {
            date: None,
            time,
            offset: None,
        },
        rest.trim(),
    ))
}

/// The instant a time line names on `date`, in its own zone or else the page's.
fn instant_on(line: &TimeLine, date: NaiveDate, offset: FixedOffset) -> Option<DateTime<Utc>> {
    line.offset
        .unwrap_or(offset)
        .from_local_datetime(&date.and_time(line.time))
        .single()
        .map(|dt| dt.with_timezone(&Utc))
}

/// Turns the time lines of a page (newest first) into instants. A time without a date takes the
/// latest date that keeps the page's order: the last-update day for the newest, then stepping
/// back a day whenever a time would come after the entry above it. A dated line further down
/// the page outranks that guess: a time without a date is never taken to be older than it (the
/// manifest's last-update day may be a default; the page's own date is not).
pub fn resolve_time_lines(
    lines: &[Option<TimeLine>],
    story_updated: DateTime<Utc>,
    offset: FixedOffset,
) -> Vec<Option<DateTime<Utc>>> {
    let local_updated = story_updated.with_timezone(&offset);
    let end_of_day = local_updated
        .date_naive()
        .and_hms_opt(23, 59, 59)
        .and_then(|dt| offset.from_local_datetime(&dt).single())
        .map_or(story_updated, |dt| dt.with_timezone(&Utc));
    // floors[i]: the instant of the nearest dated line below line i.
    let mut floors = vec![None; lines.len()];
    let mut floor = None;
    for i in (0..lines.len()).rev() {
        floors[i] = floor;
        if let Some(line) = &lines[i] {
            if let Some(t) = line.date.and_then(|d| instant_on(line, d, offset)) {
                floor = Some(t);
            }
        }
    }
    let mut bound = end_of_day;
    lines
        .iter()
        .zip(floors)
        .map(|(line, floor)| {
            let line = line.as_ref()?;
            let off = line.offset.unwrap_or(offset);
            let at = |date: NaiveDate| instant_on(line, date, offset);
            let instant = match line.date {
                Some(date) => at(date)?,
                None => {
                    let mut date = bound.with_timezone(&off).date_naive();
                    let mut t = at(date)?;
                    if t > bound {
                        date = date.pred_opt()?;
                        t = at(date)?;
                    }
                    match floor {
                        // The earliest day that is not older than the dated line below.
                        Some(f) if t < f => {
                            let day = f.with_timezone(&off).date_naive();
                            match at(day)? {
                                t if t >= f => t,
                                _ => at(day.succ_opt()?)?,
                            }
                        }
                        _ => t,
                    }
                }
            };
            bound = instant;
            Some(instant)
        })
        .collect()
}

/// Fills in the times nobody gave. `known[i]` is the explicit time of entry `i` (0 = newest).
/// The newest entry without a time takes the story's last update, the oldest its publication,
/// and the rest are spread evenly between their nearest known neighbours. Finally the page
/// order is enforced: every entry is at least one second newer than the one below it, so no
/// two entries share a time. Returns each entry's time and whether it was inferred.
pub fn infer_times(
    known: &[Option<DateTime<Utc>>],
    story_published: DateTime<Utc>,
    story_updated: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, bool)> {
    let n = known.len();
    if n == 0 {
        return Vec::new();
    }
    let mut anchors: Vec<Option<DateTime<Utc>>> = known.to_vec();
    if anchors[0].is_none() {
        anchors[0] = Some(story_updated.max(story_published));
    }
    if n > 1 && anchors[n - 1].is_none() {
        anchors[n - 1] = Some(story_published);
    }
    // The nearest anchor at or below each position, found in one backward pass (linear).
    let mut older_anchor = vec![n - 1; n];
    let mut next = n - 1;
    for i in (0..n).rev() {
        if anchors[i].is_some() {
            next = i;
        }
        older_anchor[i] = next;
    }
    let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut newer = 0usize; // index of the nearest anchor above
    for i in 0..n {
        if let Some(t) = anchors[i] {
            times.push(t);
            newer = i;
            continue;
        }
        let older = older_anchor[i];
        let (Some(ta), Some(tb)) = (anchors[newer], anchors[older]) else {
            times.push(story_published);
            continue;
        };
        let span = (ta - tb).num_seconds();
        let steps = (older - newer) as i64;
        let step = (i - newer) as i64;
        // Integer arithmetic: the same inputs give the same second on every machine.
        let offset = span.saturating_mul(step) / steps;
        times.push(ta - Duration::seconds(offset));
    }
    for i in (0..n.saturating_sub(1)).rev() {
        let floor = times[i + 1] + Duration::seconds(1);
        if times[i] < floor {
            times[i] = floor;
        }
    }
    times
        .into_iter()
        .zip(known)
        .map(|(t, k)| (t, k.is_none()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_between_the_time_and_its_date_and_a_day_name_after_the_time() {
        let t = parse_time_line("Updated 4:18 a.m. ET Nov. 4, 2026").expect("time");
        assert_eq!(t.date, NaiveDate::from_ymd_opt(2026, 11, 4));
        assert_eq!(t.time, NaiveTime::from_hms_opt(4, 18, 0).unwrap());
        let t = parse_time_line("08:12 Tuesday 14 April").expect("time");
        assert_eq!(t.time, NaiveTime::from_hms_opt(8, 12, 0).unwrap());
        let t = parse_time_line("14:05 BST Tue 14 April 2026").expect("time");
        assert_eq!(t.offset, FixedOffset::east_opt(3600));
        assert!(parse_time_line("Z 14:05").is_none());
        let t = parse_time_line("14:20:04").expect("time");
        assert_eq!(t.time, NaiveTime::from_hms_opt(14, 20, 0).unwrap());
        let t = parse_time_line("Tuesday 18 November 2025 14:20, UK").expect("time");
        assert_eq!(t.date, NaiveDate::from_ymd_opt(2025, 11, 18));
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn time_line_forms() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(parse_time_line("2:34pm").unwrap().time, t(14, 34));
        assert_eq!(parse_time_line("2.34 pm").unwrap().time, t(14, 34));
        assert_eq!(parse_time_line("12:05am").unwrap().time, t(0, 5));
        assert_eq!(parse_time_line("14:34").unwrap().time, t(14, 34));
        assert_eq!(parse_time_line("9am").unwrap().time, t(9, 0));
        let full = parse_time_line("10 May 2013 at 2:34pm").unwrap();
        assert_eq!(full.date, NaiveDate::from_ymd_opt(2013, 5, 10));
        assert_eq!(full.time, t(14, 34));
        let us = parse_time_line("May 10, 2013 14:34").unwrap();
        assert_eq!(us.date, NaiveDate::from_ymd_opt(2013, 5, 10));
        let upd = parse_time_line("Updated 10 May 2013 at 2:34pm BST").unwrap();
        assert_eq!(upd.offset, FixedOffset::east_opt(3600));
        assert_eq!(
            parse_time_line("2:34pm 10 May 2013").unwrap().date,
            NaiveDate::from_ymd_opt(2013, 5, 10)
        );
    }

    #[test]
    fn not_time_lines() {
        for s in [
            "",
            "2013",
            "The talks began at 2:34pm",
            "25:00",
            "13pm",
            "14:75",
            "Back to top",
            "1. Carl Dinnen",
            "10 May 2013",
            "123:45",
        ] {
            assert!(parse_time_line(s).is_none(), "{s:?} parsed as a time");
        }
    }

    #[test]
    fn resolution_steps_back_over_midnight() {
        let off = FixedOffset::east_opt(3600).unwrap();
        let lines = vec![
            parse_time_line("9:15am"),
            parse_time_line("11:40pm"),
            None,
            parse_time_line("8:00pm"),
        ];
        let got = resolve_time_lines(&lines, utc("2013-05-11T10:00:00+01:00"), off);
        assert_eq!(got[0], Some(utc("2013-05-11T09:15:00+01:00")));
        assert_eq!(got[1], Some(utc("2013-05-10T23:40:00+01:00")));
        assert_eq!(got[2], None);
        assert_eq!(got[3], Some(utc("2013-05-10T20:00:00+01:00")));
    }

    #[test]
    fn a_dated_line_below_outranks_the_last_update_day() {
        // The manifest says the page was last updated on 10 May, but a dated line lower
        // down says 11 May: the times above it belong to 11 May, not to the day before.
        let off = FixedOffset::east_opt(3600).unwrap();
        let lines = vec![
            parse_time_line("10:15pm"),
            parse_time_line("00:30"),
            parse_time_line("10 May 2013 at 11:50pm"),
            parse_time_line("9pm"),
        ];
        let got = resolve_time_lines(&lines, utc("2013-05-10T12:00:00+01:00"), off);
        assert_eq!(got[0], Some(utc("2013-05-11T22:15:00+01:00")));
        assert_eq!(got[1], Some(utc("2013-05-11T00:30:00+01:00")));
        assert_eq!(got[2], Some(utc("2013-05-10T23:50:00+01:00")));
        assert_eq!(got[3], Some(utc("2013-05-10T21:00:00+01:00")));
        // Consistent pages are unchanged: the guess already respects the dated line.
        let lines = vec![
            parse_time_line("9:15am"),
            parse_time_line("10 May 2013 at 8am"),
        ];
        let got = resolve_time_lines(&lines, utc("2013-05-11T10:00:00+01:00"), off);
        assert_eq!(got[0], Some(utc("2013-05-11T09:15:00+01:00")));
    }

    #[test]
    fn inference_spreads_and_keeps_order() {
        let p = utc("2013-05-10T08:00:00Z");
        let u = utc("2013-05-11T08:00:00Z");
        let got = infer_times(&[None, None, None, None, None], p, u);
        assert_eq!(got[0], (u, true));
        assert_eq!(got[4], (p, true));
        assert_eq!(got[2].0, utc("2013-05-10T20:00:00Z"));
        assert!(got.windows(2).all(|w| w[0].0 > w[1].0));
    }

    #[test]
    fn explicit_times_win_and_neighbours_interpolate() {
        let p = utc("2013-05-10T08:00:00Z");
        let u = utc("2013-05-11T08:00:00Z");
        let k = utc("2013-05-10T12:00:00Z");
        let got = infer_times(&[None, Some(k), None, None], p, u);
        assert_eq!(got[1], (k, false));
        assert_eq!(got[2].0, utc("2013-05-10T10:00:00Z"));
        assert!(got[2].1);
    }

    #[test]
    fn no_two_entries_share_a_time() {
        let t = utc("2013-05-10T08:00:00Z");
        let got = infer_times(&[Some(t), Some(t), None, Some(t)], t, t);
        let mut seen: Vec<_> = got.iter().map(|g| g.0).collect();
        assert!(got.windows(2).all(|w| w[0].0 > w[1].0));
        seen.dedup();
        assert_eq!(seen.len(), 4);
    }
}
