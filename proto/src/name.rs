//! Tunnel and host names: what `--name`, the API's `name` fields and a
//! config file's `[tunnels.NAME]` accept. One rule for every end, so a name
//! the CLI or the file takes is never refused by the daemon.

/// Longest name: a DNS label's 63, so a name fits in a hostname, a metric
/// label or a systemd unit instance as it is.
pub const MAX_NAME: usize = 63;

/// Checks a tunnel name: 1 to 63 of `a-z`, `0-9` and `-`, neither starting
/// nor ending with `-`, and not shaped like an id (`t-` and digits), which
/// `close` and `watch` also accept; the error says what to change.
pub fn check_tunnel_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a tunnel name cannot be empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "tunnel name {} is {} characters long; at most {MAX_NAME}",
            crate::clip::clipped(name),
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(format!(
            "tunnel name {} holds {c:?}; use only a-z, 0-9 and -",
            crate::clip::clipped(name)
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "tunnel name {name:?} starts or ends with -; a name begins and ends with a letter or digit"
        ));
    }
    if is_tunnel_id(name) {
        return Err(format!(
            "tunnel name {name:?} looks like a tunnel id (t-N); pick another so close and watch cannot mistake one for the other"
        ));
    }
    Ok(())
}

/// Checks the name of a host added at runtime (`tunnelctl host add NAME`,
/// AddHost): 1 to 63 of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`, not starting
/// with `-` or `.`, so a hostname or an ssh_config alias can name itself;
/// the error says what to change.
pub fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a host name cannot be empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "host name {} is {} characters long; at most {MAX_NAME}",
            crate::clip::clipped(name),
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "host name {} holds {c:?}; use only letters, digits, '.', '_' and '-'",
            crate::clip::clipped(name)
        ));
    }
    if name.starts_with(['-', '.']) {
        return Err(format!(
            "host name {name:?} starts with {:?}; a name begins with a letter, digit or '_'",
            &name[..1]
        ));
    }
    Ok(())
}

/// Whether `s` is shaped like a tunnel id: `t-` and one or more digits.
pub fn is_tunnel_id(s: &str) -> bool {
    s.strip_prefix("t-")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["db", "a", "web-1", "0", &"x".repeat(63)] {
            assert!(check_tunnel_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "DB",
            "db_1",
            "db.x",
            "-db",
            "db-",
            "t-1",
            "t-007",
            "é",
            &"x".repeat(64),
        ] {
            assert!(check_tunnel_name(bad).is_err(), "{bad}");
        }
        assert!(check_tunnel_name("t-x").is_ok());
        for ok in [
            "bastion",
            "db.internal",
            "Web_1",
            "10.0.0.1",
            &"h".repeat(63),
        ] {
            assert!(check_host_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a@b", "a:22", "é", &"h".repeat(64)] {
            assert!(check_host_name(bad).is_err(), "{bad}");
        }
        assert!(is_tunnel_id("t-12") && !is_tunnel_id("t-") && !is_tunnel_id("t-1a"));
    }
}
