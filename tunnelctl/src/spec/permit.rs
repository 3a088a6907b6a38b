//! `--permit-remote-open` patterns, as OpenSSH's `PermitRemoteOpen` reads
//! them: `HOST:PORT` with `*` for either part (IPv6 as `[ADDR]:PORT`), or
//! `any` or `none` alone.

/// The pattern that allows every target.
pub const ANY: &str = "any";

/// The pattern that allows no target.
pub const NONE: &str = "none";

const FORM: &str = "expected HOST:PORT (* for any host or port, IPv6 as [ADDR]:PORT), any, or none";

/// Parses one pattern. `any` and `none` (in any case) come back in lower
/// case; the rest as given.
pub fn parse_permit_remote_open(s: &str) -> Result<String, String> {
    for word in [ANY, NONE] {
        if s.eq_ignore_ascii_case(word) {
            return Ok(word.to_string());
        }
    }
    let (host, port) = match s.strip_prefix('[') {
        Some(inner) => {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("unclosed '['; {FORM}"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("no :PORT after [{addr}]; {FORM}"))?;
            (addr, port)
        }
        None => s
            .split_once(':')
            .ok_or_else(|| format!("no port in '{s}'; {FORM}"))?,
    };
    if host.is_empty() {
        return Err(format!("no host in '{s}'; {FORM}"));
    }
    if port.contains(':') {
        return Err(format!(
            "'{s}' has more than one ':'; IPv6 addresses go in brackets: [ADDR]:PORT"
        ));
    }
    if port != "*" && !matches!(port.parse::<u16>(), Ok(1..)) {
        return Err(format!(
            "port '{port}' in '{s}' is not 1..65535 or *; {FORM}"
        ));
    }
    Ok(s.to_string())
}

/// Checks a whole list: `any` and `none` must stand alone, as OpenSSH
/// requires.
pub fn check_permit_list(patterns: &[String]) -> Result<(), String> {
    let alone = patterns.iter().find(|p| *p == ANY || *p == NONE);
    match alone {
        Some(word) if patterns.len() > 1 => Err(format!(
            "'{word}' must be the only --permit-remote-open; drop it or the others"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for ok in [
            "db:5432",
            "*:443",
            "intranet:*",
            "*:*",
            "[::1]:22",
            "[fd00::*]:80",
        ] {
            assert_eq!(parse_permit_remote_open(ok).as_deref(), Ok(ok), "{ok}");
        }
        assert_eq!(parse_permit_remote_open("ANY").as_deref(), Ok("any"));
        assert_eq!(parse_permit_remote_open("None").as_deref(), Ok("none"));
    }

    #[test]
    fn bad_patterns_say_what_to_type() {
        let err = |s: &str| parse_permit_remote_open(s).unwrap_err();
        assert!(err("db").contains("no port in 'db'; expected HOST:PORT"));
        assert!(err(":80").contains("no host"));
        assert!(err("db:0").contains("port '0'"));
        assert!(err("db:http").contains("not 1..65535 or *"));
        assert!(err("db:").contains("port ''"));
        assert!(err("::1:22").contains("no host"));
        assert!(err("fd00::1:22").contains("IPv6 addresses go in brackets"));
        assert!(err("[::1").contains("unclosed"));
        assert!(err("[::1]22").contains("no :PORT"));
        assert!(err("").contains("no port"));
    }

    #[test]
    fn any_and_none_stand_alone() {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_permit_list(&list(&["any"])).is_ok());
        assert!(check_permit_list(&list(&["a:1", "b:2"])).is_ok());
        assert!(check_permit_list(&list(&[])).is_ok());
        let e = check_permit_list(&list(&["a:1", "none"])).unwrap_err();
        assert!(e.contains("'none' must be the only"), "{e}");
    }
}
