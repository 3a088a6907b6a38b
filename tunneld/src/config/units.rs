//! The units of flags and config files: durations, sizes, counts, ports.

use std::time::Duration;

use tunnel_proto::duration::BoundedDuration;

/// Parses a positive duration such as `500ms`, `15s` or `2m`, up to 365
/// days ([`tunnel_proto::duration`], the one range of flags, config and API).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    BoundedDuration::parse_positive(s).map(BoundedDuration::get)
}

/// Parses a duration that may be zero (`0` or `0s`: "not at all"), up to
/// 365 days.
pub fn parse_duration_or_zero(s: &str) -> std::result::Result<Duration, String> {
    BoundedDuration::parse(s).map(BoundedDuration::get)
}

/// Parses a positive size in bytes with an optional `KiB`, `MiB` or `GiB`
/// suffix.
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (num, mult) = [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .iter()
        .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((t, 1));
    match num.trim().parse::<usize>() {
        Ok(n) if n > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s:?} is too large")),
        _ => Err(format!("{s:?} is not a size (e.g. 8MiB, 512KiB, 65536)")),
    }
}

/// A TCP port other than 0.
pub(super) fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A size as [`parse_size`] reads it, that fits 32 bits (SSH window and
/// packet sizes).
pub fn parse_u32_size(s: &str) -> std::result::Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("{s:?} is too large (at most 4GiB - 1)"))
}

/// A size as [`parse_size`] reads it, or `0` ("none").
pub fn parse_size_or_zero(s: &str) -> std::result::Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    Ok(parse_size(s)? as u64)
}

/// A count of at least one.
pub fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4GB").is_err());
    }
}
