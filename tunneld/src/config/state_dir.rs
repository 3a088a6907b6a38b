//! Where tunneld keeps what survives a restart: `--state-dir`, else
//! systemd's `$STATE_DIRECTORY` (its first entry), else
//! `$XDG_STATE_HOME/tunneld`, else `~/.local/state/tunneld` (the XDG Base
//! Directory default). `--state-dir none` runs without one: nothing can be
//! persisted and ids start again at t-1.

use std::path::{Path, PathBuf};

use super::expand_home;

/// The state directory for `flag` (the `--state-dir` value, if given);
/// `None` for `none`.
pub fn resolve(flag: Option<&Path>) -> Option<PathBuf> {
    resolve_with(flag, |k| std::env::var_os(k).filter(|v| !v.is_empty()))
}

fn resolve_with(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return (dir != Path::new("none")).then(|| expand_home(dir));
    }
    if let Some(dirs) = env("STATE_DIRECTORY") {
        // systemd joins several StateDirectory= entries with ':'.
        let first = dirs.to_string_lossy().split(':').next().map(PathBuf::from);
        if let Some(first) = first.filter(|p| p.is_absolute()) {
            return Some(first);
        }
    }
    if let Some(base) = env("XDG_STATE_HOME").map(PathBuf::from) {
        // The spec: a relative value is invalid and is ignored.
        if base.is_absolute() {
            return Some(base.join("tunneld"));
        }
    }
    let home = env("HOME").map(PathBuf::from)?;
    Some(home.join(".local/state/tunneld"))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn flag_then_systemd_then_xdg_then_home() {
        let all = [
            ("STATE_DIRECTORY", "/var/lib/tunneld:/var/lib/other"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        let flag = Path::new("/srv/state");
        assert_eq!(resolve_with(Some(flag), env(&all)), Some(flag.into()));
        assert_eq!(resolve_with(Some(Path::new("none")), env(&all)), None);
        assert_eq!(
            resolve_with(None, env(&all)),
            Some("/var/lib/tunneld".into())
        );
        assert_eq!(
            resolve_with(None, env(&all[1..])),
            Some("/x/tunneld".into())
        );
        assert_eq!(
            resolve_with(None, env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/home/u")])),
            Some("/home/u/.local/state/tunneld".into())
        );
        assert_eq!(resolve_with(None, env(&[])), None);
    }
}
