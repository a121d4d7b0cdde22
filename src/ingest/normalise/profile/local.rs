//! Local papers' breaking-news blogs (the Reach/Newsquest/National World family of templates).

use super::Profile;

pub const PROFILE: Profile = Profile {
    name: "local",
    claims: &[
        "live news stream",
        "breaking news live",
        "key updates",
        "follow our live blog",
        "our live blog",
        "stay up to date with",
        "sign up to our",
    ],
    markers: &["live news stream", "breaking news live", "live blog"],
    labels: &[],
    sections: &["key updates"],
    noise: &["breaking news", "live news stream"],
    noise_prefixes: &[
        "stay up to date with",
        "sign up to our",
        "follow our live blog",
        "want the latest",
        "get the latest",
        "don't miss",
        "for the latest",
        "get the biggest stories",
        "get all the latest",
    ],
    ends: &[],
    untitled_headings: &[],
    banner_ends: &[],
    datelines: false,
};
