//! ITV News: story pages, single-update pages and the home page's stream.

use super::Profile;

pub const PROFILE: Profile = Profile {
    name: "itv",
    claims: &[
        "latest itv news reports",
        "itv report",
        "itv news",
        "view all ",
        "itv news central",
        "itv news london",
    ],
    markers: &["latest itv news reports", "latest reports"],
    labels: &[],
    sections: &[],
    noise: &["itv news", "itv report", "watch itv news"],
    noise_prefixes: &["view all "],
    // The related stories under the stream.
    ends: &[
        "more from itv news",
        "more on this story",
        "more from this region",
    ],
    untitled_headings: &[],
    banner_ends: &[],
    datelines: false,
};
