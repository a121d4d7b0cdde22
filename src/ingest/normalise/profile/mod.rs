//! Template profiles: what differs between publishers and page templates, as data.
//!
//! One classifier (`lines`) and one grouping pass (`parse`) read every page; a profile only
//! lists the lines a template family uses for its markers, furniture and generic headings.
//! The generic lists apply to every page; a profile adds its own. A page is read with the
//! profile that claims the most of its lines (or the one the manifest names), else `GENERIC`.
//! Adding a publisher means adding one file here and its fixtures.

mod bbc;
mod generic;
mod guardian;
mod itv;
mod local;

/// The lines a template family uses. Every text is lowercase; lines are compared trimmed,
/// lowercased and without trailing `.`, `:` or `…`.
#[derive(Debug)]
pub struct Profile {
    /// The name a manifest uses (`template = "bbc-live"`).
    pub name: &'static str,
    /// Lines (or line starts) that only this family's pages carry.
    pub claims: &'static [&'static str],
    /// Headers of the entry stream (`Live updates`, `Live Reporting`).
    pub markers: &'static [&'static str],
    /// Labels saying the page is live (`Live` above the title): not where the stream begins.
    pub labels: &'static [&'static str],
    /// Headers of a section above the stream (`Summary`, `Key events`): page furniture when a
    /// stream header follows, the header itself when none does.
    pub sections: &'static [&'static str],
    /// Whole lines that are furniture.
    pub noise: &'static [&'static str],
    /// Starts of lines that are furniture.
    pub noise_prefixes: &'static [&'static str],
    /// Lines that begin the page's footer (`Back to top`, `More on this story`): everything from
    /// there on is furniture. Only below the stream's header (or the title).
    pub ends: &'static [&'static str],
    /// Headings that say nothing about the entry (`Post update`): the entry is untitled.
    pub untitled_headings: &'static [&'static str],
    /// The last line of a banner at the top of the page (`Find out more`): it and everything
    /// above it go.
    pub banner_ends: &'static [&'static str],
    /// Whether an entry's time can stand over a place name (`Posted at 9:05` over `Dover`):
    /// the dateline, not the entry's headline.
    pub datelines: bool,
}

/// Every profile a page can be read with, the generic one last.
pub const ALL: &[&Profile] = &[
    &itv::PROFILE,
    &bbc::PROFILE,
    &guardian::PROFILE,
    &local::PROFILE,
    &generic::PROFILE,
];

pub use generic::PROFILE as GENERIC;

/// The profile a manifest names, by name.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter().copied().find(|p| p.name == name)
}

/// A line as profiles compare it: trimmed, lowercased, curly apostrophes straightened and
/// trailing punctuation dropped. `None` for lines too long to be furniture.
pub fn key(line: &str) -> Option<String> {
    let s = line.trim();
    if s.is_empty() || s.len() > 200 {
        return None;
    }
    // One allocation per line: the lowercased copy, cut in place.
    let mut lower = s.to_lowercase();
    if lower.contains('’') {
        lower = lower.replace('’', "'");
    }
    let kept = lower
        .trim_end_matches(['.', ':', '…', ' ', '›', '»', '>'])
        .len();
    lower.truncate(kept);
    Some(lower)
}

impl Profile {
    // Every line of a report is looked up in these lists (about 200 strings), so each
    // comparison first checks the first byte (and the length), inline, before calling memcmp:
    // the same answer, for a fraction of the calls.
    fn has(list: &[&str], key: &str) -> bool {
        let first = key.as_bytes().first();
        list.iter()
            .any(|p| p.len() == key.len() && p.as_bytes().first() == first && *p == key)
    }

    fn starts(list: &[&str], key: &str) -> bool {
        let first = key.as_bytes().first();
        list.iter().any(|p| {
            p.is_empty()
                || (p.len() <= key.len() && p.as_bytes().first() == first && key.starts_with(p))
        })
    }

    pub fn is_marker(&self, key: &str) -> bool {
        Self::has(self.markers, key) || Self::has(GENERIC.markers, key)
    }

    pub fn is_label(&self, key: &str) -> bool {
        Self::has(self.labels, key) || Self::has(GENERIC.labels, key)
    }

    pub fn is_end(&self, key: &str) -> bool {
        Self::has(self.ends, key) || Self::has(GENERIC.ends, key) || key.starts_with("copyright ©")
    }

    pub fn is_section(&self, key: &str) -> bool {
        Self::has(self.sections, key) || Self::has(GENERIC.sections, key)
    }

    pub fn is_noise(&self, key: &str) -> bool {
        // Profiles are constants, told apart by name (each is unique).
        match ALL.iter().position(|p| p.name == self.name) {
            Some(i) => noise_index()[i].is_noise(key),
            None => {
                Self::has(self.noise, key)
                    || Self::has(GENERIC.noise, key)
                    || Self::starts(self.noise_prefixes, key)
                    || Self::starts(GENERIC.noise_prefixes, key)
            }
        }
    }

    pub fn is_untitled_heading(&self, key: &str) -> bool {
        Self::has(self.untitled_headings, key) || Self::has(GENERIC.untitled_headings, key)
    }

    pub fn is_banner_end(&self, key: &str) -> bool {
        Self::has(self.banner_ends, key) || Self::has(GENERIC.banner_ends, key)
    }
}

/// A profile's noise lists (its own and the generic ones) indexed for lookups: every line of
/// a report is looked up twice, against some 200 strings.
struct NoiseIndex {
    lines: std::collections::HashSet<&'static str>,
    /// Prefixes by their first byte (an empty prefix matches every line).
    prefixes: Vec<Vec<&'static str>>,
    any: bool,
}

impl NoiseIndex {
    fn new(profile: &'static Profile) -> NoiseIndex {
        let mut prefixes = vec![Vec::new(); 256];
        let mut any = false;
        for p in profile.noise_prefixes.iter().chain(GENERIC.noise_prefixes) {
            match p.as_bytes().first() {
                Some(&b) => prefixes[usize::from(b)].push(*p),
                None => any = true,
            }
        }
        NoiseIndex {
            lines: profile.noise.iter().chain(GENERIC.noise).copied().collect(),
            prefixes,
            any,
        }
    }

    fn is_noise(&self, key: &str) -> bool {
        self.any
            || self.lines.contains(key)
            || key.as_bytes().first().is_some_and(|&b| {
                self.prefixes[usize::from(b)]
                    .iter()
                    .any(|p| key.starts_with(p))
            })
    }
}

/// The [`NoiseIndex`] of each profile in [`ALL`], in the same order, built once.
fn noise_index() -> &'static [NoiseIndex] {
    static INDEX: std::sync::OnceLock<Vec<NoiseIndex>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| ALL.iter().map(|p| NoiseIndex::new(p)).collect())
}

/// Chooses the profile for a page: the named one if it exists, else the one claiming the most
/// distinct lines, else the generic profile.
pub fn select(text: &str, named: Option<&str>) -> &'static Profile {
    if let Some(p) = named.and_then(by_name) {
        return p;
    }
    let candidates: Vec<&'static Profile> = ALL
        .iter()
        .copied()
        .filter(|p| !p.claims.is_empty())
        .collect();
    let mut claimed: Vec<Vec<bool>> = candidates
        .iter()
        .map(|p| vec![false; p.claims.len()])
        .collect();
    // Claims are short lines: a long line is body text and claims nothing.
    for k in text.lines().filter(|l| l.len() <= 80).filter_map(key) {
        for (p, seen) in candidates.iter().zip(claimed.iter_mut()) {
            for (c, s) in p.claims.iter().zip(seen.iter_mut()) {
                *s |= k.starts_with(c);
            }
        }
    }
    let mut best: Option<(&'static Profile, usize)> = None;
    for (p, seen) in candidates.iter().zip(&claimed) {
        let score = seen.iter().filter(|&&c| c).count();
        if score > 0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((p, score));
        }
    }
    best.map_or(&GENERIC, |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_choose_their_profile() {
        assert_eq!(
            select("Title\n\nLive Reporting\n\nAll times stated are UK\n", None).name,
            "bbc-live"
        );
        assert_eq!(
            select("Title\n\nLatest ITV News reports\n", None).name,
            "itv"
        );
        assert_eq!(select("Title\n\nSomething\n", None).name, "generic");
        assert_eq!(
            select("Title\n\nLive Reporting\n", Some("guardian")).name,
            "guardian"
        );
        assert_eq!(select("Title\n", Some("no-such")).name, "generic");
    }

    #[test]
    fn keys_ignore_case_and_trailing_marks() {
        assert_eq!(
            key("  View all 12 updates ›").as_deref(),
            Some("view all 12 updates")
        );
        assert_eq!(key("Sort by:").as_deref(), Some("sort by"));
    }
}
