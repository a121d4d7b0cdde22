//! The Guardian's live blogs (politics live, sport minute-by-minute).

use super::Profile;

pub const PROFILE: Profile = Profile {
    name: "guardian",
    claims: &[
        "key events",
        "show key events only",
        "photograph: ",
        "first published on ",
    ],
    // The key events list ends where the blog proper begins.
    markers: &[
        "show key events only",
        "please turn on javascript to use this feature",
    ],
    labels: &[],
    sections: &["key events"],
    noise: &["key event", "key events", "blocks", "filter", "live feed"],
    noise_prefixes: &[
        "first published on ",
        "updated at ",
        "show key events only",
        "please turn on javascript",
    ],
    ends: &[],
    untitled_headings: &[],
    banner_ends: &[],
    datelines: false,
};
