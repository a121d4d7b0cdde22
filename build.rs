//! Build script: the commit for `livefeed_build_info` (`git rev-parse --short HEAD`), or
//! "unknown" when git or the repository is absent (a crate tarball, a build without git).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LIVEFEED_COMMIT={commit}");
}
