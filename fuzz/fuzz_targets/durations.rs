//! Durations from flags, the config file and the API:
//! `tunneld::config::{parse_duration, parse_duration_or_zero}`, tunnelctl's
//! `parse_duration`, and `BoundedDuration::from_proto` for a client's
//! `google.protobuf.Duration`. Never a panic; an accepted duration is at
//! most `tunnel_proto::duration::MAX`, positive where it must be, and reads
//! back from how it is shown.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnel_proto::{
    duration::{BoundedDuration, MAX},
    pbjson_types,
};
use tunneld::config::{parse_duration, parse_duration_or_zero};

fuzz_target!(|data: &[u8]| {
    let s = tunneld_fuzz::text(data);
    let or_zero = parse_duration_or_zero(&s);
    if let Ok(d) = or_zero {
        assert!(d <= MAX, "{s:?} gave {d:?}");
        let shown = BoundedDuration::new(d).expect("in range").to_string();
        assert_eq!(
            parse_duration_or_zero(&shown),
            Ok(d),
            "{s:?} shown as {shown:?}"
        );
    }
    match parse_duration(&s) {
        Ok(d) => {
            assert!(!d.is_zero() && d <= MAX, "{s:?} gave {d:?}");
            assert_eq!(or_zero, Ok(d), "{s:?}");
        }
        Err(_) => assert!(or_zero.is_err() || or_zero == Ok(std::time::Duration::ZERO)),
    }
    if let Ok(d) = tunnelctl::spec::parse_duration(&s) {
        assert!(!d.is_zero() && d <= MAX, "{s:?} gave {d:?}");
    }

    // The API's form: seconds and nanos, as a client may send any of them.
    if let Some((seconds, nanos)) = data.split_first_chunk::<8>().and_then(|(s, rest)| {
        let nanos = rest.first_chunk::<4>()?;
        Some((i64::from_le_bytes(*s), i32::from_le_bytes(*nanos)))
    }) {
        let proto = pbjson_types::Duration { seconds, nanos };
        if let Ok(d) = BoundedDuration::from_proto("timeout", &proto) {
            assert!(d.get() <= MAX, "{proto:?} gave {d:?}");
        }
    }
});
