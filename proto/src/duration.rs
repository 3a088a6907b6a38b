//! The one duration type of tunneld's flags, config file and API, and of
//! tunnelctl's flags: [`BoundedDuration`], from zero to [`MAX`] (365 days).
//!
//! Every duration a person or a client hands in goes through it, so none
//! can overflow the arithmetic on instants (`Instant::now() + d`), tonic's
//! `grpc-timeout` header, or proto3 JSON (whose `Duration` ends at
//! ±315,576,000,000 s); an out-of-range value is refused with a message
//! that gives the range, and the caller adds the field or flag it came in.

use std::{fmt, str::FromStr, time::Duration};

/// The longest duration accepted anywhere: 365 days.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The accepted range, as messages and docs spell it.
pub const RANGE: &str = "0s to 365d";

/// A duration from zero to [`MAX`]. Whether zero is allowed is the
/// caller's choice ([`BoundedDuration::parse_positive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BoundedDuration(Duration);

impl BoundedDuration {
    /// Zero.
    pub const ZERO: BoundedDuration = BoundedDuration(Duration::ZERO);

    /// `d` if it is at most [`MAX`].
    pub fn new(d: Duration) -> Result<Self, String> {
        if d > MAX {
            return Err(format!(
                "{} is out of range ({RANGE})",
                humantime::format_duration(d)
            ));
        }
        Ok(BoundedDuration(d))
    }

    /// Parses `500ms`, `15s`, `2m`, `1h30m`, `7d` (humantime syntax) or a
    /// bare `0`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "0" {
            return Ok(BoundedDuration::ZERO);
        }
        let shown = crate::clip::clip(s, 64);
        if upper_bound_secs(t) > PRESCAN_LIMIT_SECS {
            return Err(format!("{shown} is out of range ({RANGE})"));
        }
        match humantime::parse_duration(t) {
            Ok(d) if d <= MAX => Ok(BoundedDuration(d)),
            Ok(_) | Err(humantime::DurationError::NumberOverflow) => {
                Err(format!("{shown} is out of range ({RANGE})"))
            }
            Err(e) => Err(format!(
                "{shown} is not a duration ({e}; e.g. 500ms, 15s, 2m, 1h)"
            )),
        }
    }

    /// As [`parse`](Self::parse), refusing zero.
    pub fn parse_positive(s: &str) -> Result<Self, String> {
        let d = Self::parse(s)?;
        if d.0.is_zero() {
            return Err(format!(
                "{} must be longer than zero (range: 1ns to 365d)",
                crate::clip::clip(s, 64)
            ));
        }
        Ok(d)
    }

    /// A `google.protobuf.Duration` from the API: negative, malformed
    /// (nanos outside 0..1e9) or longer than [`MAX`] is refused, naming
    /// `field`.
    pub fn from_proto(field: &str, d: &pbjson_types::Duration) -> Result<Self, String> {
        if d.seconds < 0 || d.nanos < 0 {
            return Err(format!(
                "{field} must not be negative (got {}s {}ns; range {RANGE})",
                d.seconds, d.nanos
            ));
        }
        if d.nanos >= 1_000_000_000 {
            return Err(format!(
                "{field} has nanos {} (must be below 1000000000)",
                d.nanos
            ));
        }
        let d = Duration::new(d.seconds as u64, d.nanos as u32);
        Self::new(d).map_err(|e| format!("{field}: {e}"))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// A duration tunneld sends, as `google.protobuf.Duration`: always valid
/// proto3 JSON (longer ones, which nothing measures, are sent as [`MAX`]).
pub fn to_proto(d: Duration) -> pbjson_types::Duration {
    let d = d.min(MAX);
    pbjson_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

impl FromStr for BoundedDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<BoundedDuration> for Duration {
    fn from(d: BoundedDuration) -> Duration {
        d.0
    }
}

impl fmt::Display for BoundedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Inputs whose terms may add up to more seconds than this are refused
/// before humantime sees them. Far above [`MAX`] and far below `u64::MAX`:
/// humantime 2.4 panics ("overflow in Duration::new") instead of answering
/// `NumberOverflow` when its running total reaches `u64::MAX` seconds with a
/// carry of exactly one second of nanoseconds (found by the fuzzer with
/// `18446744073709551615s0.5s0.5s`).
const PRESCAN_LIMIT_SECS: u128 = 1 << 60;

/// An upper bound, in seconds, of the sum humantime computes for `s`: each
/// number's integer part plus one (for a fraction) times its unit in whole
/// seconds, sub-second units counting a full second and unknown ones a
/// year. Cheap and never below the true sum, so an input under
/// [`PRESCAN_LIMIT_SECS`] cannot reach humantime's overflow.
fn upper_bound_secs(s: &str) -> u128 {
    let mut total: u128 = 0;
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        let Some(first) = c.to_digit(10) else {
            chars.next();
            continue;
        };
        chars.next();
        let mut n = u128::from(first);
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            n = n.saturating_mul(10).saturating_add(u128::from(d));
            chars.next();
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut unit = String::new();
        while let Some(&u) = chars.peek().filter(|u| u.is_alphabetic()) {
            unit.push(u);
            chars.next();
        }
        total = total.saturating_add(n.saturating_add(1).saturating_mul(unit_secs(&unit)));
    }
    total
}

/// humantime's unit names, in whole seconds (at least one).
fn unit_secs(unit: &str) -> u128 {
    match unit {
        "minutes" | "minute" | "min" | "mins" | "m" => 60,
        "hours" | "hour" | "hr" | "hrs" | "h" => 3600,
        "days" | "day" | "d" => 86_400,
        "weeks" | "week" | "wk" | "wks" | "w" => 604_800,
        "months" | "month" | "M" => 2_630_016,
        "nanos" | "nsec" | "ns" | "usec" | "us" | "µs" | "millis" | "msec" | "ms" | "seconds"
        | "second" | "secs" | "sec" | "s" => 1,
        _ => 31_557_600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantimes_overflow_panic_is_refused_as_out_of_range() {
        for s in [
            "18446744073709551615s0.5s0.5s",
            "18446744073709551614s1s0.5s0.5s",
            "1152921504606846977ns",
        ] {
            let e = BoundedDuration::parse(s).unwrap_err();
            assert!(e.contains("out of range"), "{s}: {e}");
        }
        // The bound never refuses what is in range, however it is spelled.
        assert_eq!(
            BoundedDuration::parse("364d 23h 59m 59s 999ms 999us 999ns").map(BoundedDuration::get),
            Ok(MAX - Duration::from_nanos(1))
        );
        assert!(BoundedDuration::parse("1000000000ns").is_ok());
        assert!(upper_bound_secs("1h 30m") >= 5400);
    }

    #[test]
    fn accepts_the_range_and_refuses_past_it() {
        assert_eq!(BoundedDuration::parse("0").unwrap(), BoundedDuration::ZERO);
        assert_eq!(
            BoundedDuration::parse("15s").unwrap().get(),
            Duration::from_secs(15)
        );
        assert_eq!(BoundedDuration::parse("365d").unwrap().get(), MAX);
        for s in [
            "365d 1s",
            "10001y",
            "9223372036854775807s",
            "500000000000y",
            "300000000000y",
        ] {
            let e = BoundedDuration::parse(s).unwrap_err();
            assert!(e.contains("out of range (0s to 365d)"), "{s}: {e}");
        }
        assert!(
            BoundedDuration::parse("ten")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(BoundedDuration::parse_positive("0s").is_err());
        assert!(BoundedDuration::parse_positive("1ms").is_ok());
    }

    #[test]
    fn proto_values_are_checked_and_sent_values_are_valid_json() {
        let p = |seconds, nanos| pbjson_types::Duration { seconds, nanos };
        assert!(
            BoundedDuration::from_proto("idle_timeout", &p(-1, 0))
                .unwrap_err()
                .starts_with("idle_timeout must not be negative")
        );
        assert!(BoundedDuration::from_proto("timeout", &p(0, 1_000_000_000)).is_err());
        let e = BoundedDuration::from_proto("timeout", &p(i64::MAX, 999_999_999)).unwrap_err();
        assert!(
            e.starts_with("timeout: ") && e.contains("0s to 365d"),
            "{e}"
        );
        assert_eq!(
            BoundedDuration::from_proto("t", &p(5, 0)).unwrap().get(),
            Duration::from_secs(5)
        );
        assert_eq!(to_proto(Duration::MAX).seconds, MAX.as_secs() as i64);
    }

    #[test]
    fn a_long_input_is_not_echoed_whole() {
        let long = "9".repeat(1 << 20);
        let e = BoundedDuration::parse(&long).unwrap_err();
        assert!(e.len() < 300, "{} bytes", e.len());
    }
}
