//! `tunneld::config::parse_size` (`--max-spill`, `rekey_limit`, …): never
//! a panic; an accepted size is positive and reads back from its digits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld::config::parse_size;

fuzz_target!(|data: &[u8]| {
    let s = tunneld_fuzz::text(data);
    if let Ok(n) = parse_size(&s) {
        assert!(n > 0, "{s:?} gave 0");
        assert_eq!(parse_size(&n.to_string()), Ok(n), "{s:?}");
    }
});
