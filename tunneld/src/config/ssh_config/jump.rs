//! `ProxyJump` values: checked as `ssh` checks them, and printed as
//! `ssh -G` prints them.

/// One hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, PartialEq, Eq)]
struct Hop {
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("bad port {s:?}"))
}

fn hop(s: &str) -> Result<Hop, String> {
    let bad = |why: &str| format!("bad ProxyJump hop {s:?}: {why}");
    let rest = s.strip_prefix("ssh://").unwrap_or(s);
    let (user, hostport) = match rest.rfind('@') {
        Some(i) => (Some(rest[..i].to_string()), &rest[i + 1..]),
        None => (None, rest),
    };
    if user.as_deref() == Some("") {
        return Err(bad("empty user"));
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Err(bad("unclosed ["));
        };
        let after = &inner[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port(p).map_err(|e| bad(&e))?),
            None if after.is_empty() => None,
            None => return Err(bad("text after ]")),
        };
        (inner[..end].to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(port(p).map_err(|e| bad(&e))?)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(bad("not a host name"));
    }
    Ok(Hop { user, host, port })
}

/// Checks a `ProxyJump` value (`none`, or comma-separated hops) and returns
/// it as `ssh -G` prints it: the hops before the last verbatim, the last
/// rebuilt, with a numeric or IPv6 host in brackets. `none` stays `none`.
pub(super) fn normalize(value: &str) -> Result<String, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok("none".into());
    }
    let (extra, last) = match value.rfind(',') {
        Some(i) => (Some(&value[..i]), &value[i + 1..]),
        None => (None, value),
    };
    for h in extra.into_iter().flat_map(|e| e.split(',')) {
        hop(h)?;
    }
    let last = hop(last)?;
    let bracket =
        last.host.contains(':') || last.host.chars().all(|c| c.is_ascii_digit() || c == '.');
    let mut out = String::new();
    if let Some(extra) = extra {
        out.push_str(extra);
        out.push(',');
    }
    if let Some(user) = &last.user {
        out.push_str(user);
        out.push('@');
    }
    if bracket {
        out.push('[');
    }
    out.push_str(&last.host);
    if bracket {
        out.push(']');
    }
    if let Some(p) = last.port {
        out.push_str(&format!(":{p}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_ssh_g_prints() {
        assert_eq!(
            normalize("bar@jump:2222,baz"),
            Ok("bar@jump:2222,baz".into())
        );
        assert_eq!(normalize("10.0.0.1"), Ok("[10.0.0.1]".into()));
        assert_eq!(
            normalize("ssh://u@h:2,x@10.1.1.1:33"),
            Ok("ssh://u@h:2,x@[10.1.1.1]:33".into())
        );
        assert_eq!(normalize("a,[::1]:22"), Ok("a,[::1]:22".into()));
        assert_eq!(normalize("ssh://u@h:2"), Ok("u@h:2".into()));
        assert_eq!(normalize("NONE"), Ok("none".into()));
        assert!(normalize("a,").is_err());
        assert!(normalize("h:0").is_err());
        assert!(normalize("h:x").is_err());
        assert!(normalize("[::1").is_err());
    }
}
