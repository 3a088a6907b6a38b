//! Who runs tunneld: the user's name and home, as `ssh` finds them.

use std::path::{Path, PathBuf};

/// `p` with a leading `~` replaced by `$HOME`, as the shell and ssh do.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The login name: `$USER`, else `$LOGNAME`, else root.
pub fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}
