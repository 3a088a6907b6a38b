//! Plain values: ports, durations, counts, `NAME=VALUE` pairs and
//! non-empty strings.

use std::time::Duration;

/// Parses a port that must be 1..65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("port must be 1..65535".into()),
        Ok(port) => Ok(port),
        Err(_) => Err("not a port number (1..65535)".into()),
    }
}

/// Parses a port where 0 means "pick a free one".
pub fn parse_port_or_pick(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| "not a port number (1..65535, or 0 to pick a free one)".into())
}

/// Parses a positive humantime duration such as `10s`, `1m30s` or `500ms`,
/// up to 365 days (the range tunneld's API accepts).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    tunnel_proto::duration::BoundedDuration::parse_positive(s).map(Into::into)
}

/// Parses a count that must be 1..=4294967295, such as a connection limit.
pub fn parse_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be more than zero".into()),
        Ok(n) => Ok(n),
        Err(_) if s.starts_with('-') => Err("must be more than zero".into()),
        Err(_) => Err(format!("not a whole number (1..{})", u32::MAX)),
    }
}

/// Parses `NAME=VALUE` with a shell-safe name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "'{name}' is not a valid variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Rejects an empty host or address value.
pub fn parse_nonempty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("22"), Ok(22));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("x").is_err());
        assert_eq!(parse_port_or_pick("0"), Ok(0));
        assert_eq!(parse_port_or_pick("65535"), Ok(65535));
        assert!(parse_port_or_pick("65536").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("1"), Ok(1));
        assert_eq!(parse_count("4294967295"), Ok(u32::MAX));
        assert!(parse_count("0").unwrap_err().contains("more than zero"));
        assert!(parse_count("-1").unwrap_err().contains("more than zero"));
        assert!(parse_count("abc").unwrap_err().contains("whole number"));
        assert!(
            parse_count("4294967296")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(parse_count("").is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A_1=x=y"), Ok(("A_1".into(), "x=y".into())));
        assert_eq!(parse_env("_=").map(|p| p.1), Ok(String::new()));
        assert!(parse_env("1A=x").is_err());
        assert!(parse_env("A-B=x").is_err());
        assert!(parse_env("=x").is_err());
        assert!(parse_env("NOVALUE").is_err());
    }
}
