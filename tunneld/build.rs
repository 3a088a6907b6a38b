//! Records the commit tunneld is built from, for `tunneld_build_info`:
//! `TUNNELD_COMMIT` from the environment if set (a build without `.git`,
//! e.g. a packaged source), else `git rev-parse --short=12 HEAD`, else
//! `unknown`. Best effort: never fails the build.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TUNNELD_COMMIT");
    let commit = std::env::var("TUNNELD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves (a checkout or a commit).
    if let Some(dir) = git_dir() {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    println!("cargo:rustc-env=TUNNELD_COMMIT={commit}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn git_head() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| c.chars().all(|c| c.is_ascii_hexdigit()))
}

fn git_dir() -> Option<String> {
    git(&["rev-parse", "--absolute-git-dir"])
}
