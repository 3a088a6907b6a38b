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

/// The id of the user running tunneld.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The home directory of tunneld's user as its passwd entry gives it (what
/// `ssh` expands `~` in ssh_config with), else `$HOME`. Users that only a
/// name service (LDAP, sssd) knows fall back to `$HOME`.
pub fn passwd_home() -> PathBuf {
    let uid = uid().to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() >= 7 && fields[2] == uid).then(|| PathBuf::from(fields[5]))
            })
        })
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// This machine's host name (`%l` in ssh_config).
pub fn local_host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
