//! Finding the `tunneld` and `tunnelctl` executables.
//!
//! `CARGO_BIN_EXE_<name>` only exists for a package's own binaries, and these
//! tests live in their own package. So: `TUNNELD_BIN_DIR` when set (CI, other
//! languages' suites, prebuilt binaries); otherwise the target dir this very
//! executable was built into, after one `cargo build -p tunneld -p tunnelctl`
//! per process with the same profile, so a test never runs a stale daemon.
//!
//! A nested `cargo build` from inside `cargo test` does not deadlock: cargo
//! releases its build-dir lock before it runs the test binaries (checked with
//! cargo 1.95).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};

/// Environment variable naming a directory holding prebuilt `tunneld` and
/// `tunnelctl`; when set, nothing is built.
pub const BIN_DIR_ENV: &str = "TUNNELD_BIN_DIR";

/// The packages built on first use.
const PACKAGES: &[&str] = &["tunneld", "tunnelctl"];

/// Path of a workspace binary (`"tunneld"` or `"tunnelctl"`), building both
/// once per process first unless [`BIN_DIR_ENV`] is set.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let dir = bin_dir()?;
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{} does not exist (looked in {}; set {BIN_DIR_ENV} or run `cargo build --workspace`)",
        path.display(),
        dir.display()
    );
    Ok(path)
}

/// The directory holding the binaries; builds them on the first call.
/// Safe to call from many threads: the build runs once and its outcome is
/// shared.
pub fn bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
            return Ok(PathBuf::from(dir));
        }
        build_in_own_target_dir().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Derives `target/<profile>` from the current executable and runs cargo
/// build there with that profile.
fn build_in_own_target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the current executable")?;
    let profile_dir = profile_dir_of(&exe)
        .with_context(|| format!("cannot derive a target dir from {}", exe.display()))?;
    let profile_name = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("target profile dir has no name")?
        .to_owned();
    let target_dir = profile_dir.parent().context("profile dir has no parent")?;

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build").arg("--manifest-path").arg(&manifest);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    match profile_name.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    cmd.arg("--target-dir").arg(target_dir);
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?}; build the workspace first (`cargo build --workspace`) or set {BIN_DIR_ENV}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}); the daemon must build before its end-to-end tests can run:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(profile_dir)
}

/// `target/debug/deps/e2e-1234` → `target/debug`; `target/debug/testbed` →
/// `target/debug`.
fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let mut dir = exe.parent()?;
    if dir.file_name()? == "deps" || dir.file_name()? == "examples" {
        dir = dir.parent()?;
    }
    Some(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_from_test_and_bin_paths() {
        assert_eq!(
            profile_dir_of(Path::new("/w/target/debug/deps/e2e-0123")),
            Some(PathBuf::from("/w/target/debug"))
        );
        assert_eq!(
            profile_dir_of(Path::new("/w/target/release/testbed")),
            Some(PathBuf::from("/w/target/release"))
        );
    }
}
