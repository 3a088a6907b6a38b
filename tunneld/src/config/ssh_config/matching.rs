//! Which blocks apply: OpenSSH's wildcard patterns (`*`, `?`), pattern
//! lists (`a,!b`), `Host` lines and the `Match` criteria tunneld can
//! evaluate without running anything.

use super::error::{Origin, SshConfigError};

/// Whether `s` matches `pattern`, where `*` is any run of characters and
/// `?` any one character (OpenSSH's `match_pattern`; no classes, no
/// escapes; case-sensitive).
pub(super) fn wildcard(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && p[j] == '*' {
            star = Some((j, i));
            j += 1;
        } else if j < p.len() && (p[j] == '?' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j.min(p.len())..].iter().all(|c| *c == '*')
}

/// OpenSSH's `match_pattern_list`: `s` matches a comma-separated list if
/// some pattern matches and no `!`-negated one does. With `lower`, both
/// are lowercased first (host names: OpenSSH's `match_hostname`).
pub(super) fn pattern_list(s: &str, list: &str, lower: bool) -> bool {
    let lowered;
    let s = if lower {
        lowered = s.to_lowercase();
        lowered.as_str()
    } else {
        s
    };
    let mut matched = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let pattern = if lower {
            pattern.to_lowercase()
        } else {
            pattern.to_string()
        };
        if wildcard(s, &pattern) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Whether a `Host` line's patterns select `host` (the name as given on the
/// command line): one positive pattern matches and no `!`-negated one does.
/// Patterns are separated by blanks only (`a,b` is one pattern, as in
/// `ssh`) and compared case-sensitively.
pub(super) fn host_line(
    patterns: &[String],
    host: &str,
    at: &Origin,
) -> Result<bool, SshConfigError> {
    let mut matched = false;
    for pattern in patterns {
        if pattern.is_empty() {
            return Err(SshConfigError::line(at, "empty Host pattern"));
        }
        match pattern.strip_prefix('!') {
            Some(p) if wildcard(host, p) => return Ok(false),
            Some(_) => {}
            None => matched |= wildcard(host, pattern),
        }
    }
    Ok(matched)
}

/// What `Match` criteria are tested against at the point of the line.
pub(super) struct MatchState<'a> {
    /// `HostName` so far with `%h` substituted, else the original host.
    pub host: &'a str,
    /// The host as given on the command line.
    pub original_host: &'a str,
    /// `User` so far (the command line's first), else the local user.
    pub user: &'a str,
    /// The local user.
    pub local_user: &'a str,
}

/// Criteria `ssh` knows that tunneld refuses: evaluating them would run
/// commands, look at the network, or need a second (canonical or final)
/// pass over the files.
const REFUSED: &[&str] = &[
    "exec",
    "canonical",
    "final",
    "localnetwork",
    "tagged",
    "sessiontype",
    "command",
    "version",
];

/// Whether a `Match` line applies. Every criterion must match; a criterion
/// may be negated with `!`; `all` must stand alone.
pub(super) fn match_line(
    args: &[String],
    state: &MatchState<'_>,
    at: &Origin,
) -> Result<bool, SshConfigError> {
    let mut result = true;
    let mut args = args.iter();
    let mut count = 0;
    while let Some(arg) = args.next() {
        count += 1;
        let (negated, criterion) = match arg.strip_prefix('!') {
            Some(c) => (true, c),
            None => (false, arg.as_str()),
        };
        let criterion = criterion.to_ascii_lowercase();
        if criterion == "all" {
            if negated || count > 1 || args.next().is_some() {
                return Err(SshConfigError::line(
                    at,
                    "'all' cannot be negated nor combined with other Match criteria",
                ));
            }
            return Ok(true);
        }
        if REFUSED.contains(&criterion.as_str()) {
            return Err(SshConfigError::line(
                at,
                format!(
                    "Match criterion '{criterion}' is not supported by tunneld (only host, originalhost, user, localuser and all are); \
                     rewrite this block with those, or give tunneld a config file without it (--ssh-config FILE)"
                ),
            ));
        }
        let (subject, lower) = match criterion.as_str() {
            "host" => (state.host, true),
            "originalhost" => (state.original_host, true),
            "user" => (state.user, false),
            "localuser" => (state.local_user, false),
            _ => {
                return Err(SshConfigError::line(
                    at,
                    format!("unknown Match criterion '{criterion}'"),
                ));
            }
        };
        let Some(list) = args.next().filter(|l| !l.is_empty()) else {
            return Err(SshConfigError::line(
                at,
                format!("Match {criterion} needs a pattern list"),
            ));
        };
        if pattern_list(subject, list, lower) == negated {
            result = false;
        }
    }
    if count == 0 {
        return Err(SshConfigError::line(at, "Match needs a criterion"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use super::*;

    fn at() -> Origin {
        Origin {
            file: Arc::new(PathBuf::from("/cfg")),
            line: 3,
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("web1.example.com", "web?.*.com"));
        assert!(wildcard("", "*"));
        assert!(!wildcard("a", ""));
        assert!(wildcard("abc", "a*c*"));
        assert!(!wildcard("abd", "a*c"));
        assert!(!wildcard("Foo", "foo"));
        // A hostile pattern stays fast.
        assert!(!wildcard(
            &"a".repeat(5000),
            &format!("{}b", "a*".repeat(2000))
        ));
    }

    #[test]
    fn lists_and_negation() {
        assert!(pattern_list("db1", "web*,db*", false));
        assert!(!pattern_list("db1", "*,!db1", false));
        assert!(!pattern_list("db1", "!db1", false));
        assert!(pattern_list("foo", "FOO", true));
        assert!(pattern_list("FOO", "foo", true));
        assert!(!pattern_list("FOO", "foo", false));
    }

    #[test]
    fn host_lines() {
        let h = |p: &str, host: &str| host_line(&words(p), host, &at()).expect("valid");
        assert!(h("a b", "b"));
        assert!(!h("a,b", "a"));
        assert!(!h("* !a", "a"));
        assert!(h("* !a", "b"));
        assert!(!h("!a", "b"));
        assert!(!h("X", "x"));
    }

    #[test]
    fn match_lines() {
        let state = MatchState {
            host: "real.example",
            original_host: "alias",
            user: "bob",
            local_user: "root",
        };
        let m = |s: &str| match_line(&words(s), &state, &at());
        assert!(m("all").expect("valid"));
        assert!(m("host *.example originalhost alias").expect("valid"));
        assert!(!m("host alias").expect("valid"));
        assert!(m("!host alias user bob,alice").expect("valid"));
        assert!(!m("user !bob,*").expect("valid"));
        assert!(m("localuser root").expect("valid"));
        assert!(m("all host x").is_err());
        assert!(m("host").is_err());
        assert!(m("bogus x").is_err());
        let err = m("host x exec true").expect_err("refused").to_string();
        assert!(
            err.starts_with("/cfg line 3: Match criterion 'exec'"),
            "{err}"
        );
        for c in ["canonical", "final", "localnetwork 10.0.0.0/8", "tagged x"] {
            assert!(m(c).is_err(), "{c}");
        }
    }
}
