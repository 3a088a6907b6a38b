//! The API token file: `TokenSet::parse`, and for a set that parses,
//! `verify` of each line's token (which must be accepted) and of other
//! fragments of the input. Never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld::TokenSet;

fuzz_target!(|data: &[u8]| {
    let text = tunneld_fuzz::text(data);
    let Ok(set) = TokenSet::parse(&text) else {
        return;
    };
    assert!(!set.is_empty());
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let token = line.split_once(':').map_or(line, |(_, token)| token);
        assert!(
            set.verify(token).is_some(),
            "the token of line {line:?} is refused"
        );
        let _ = set.verify(line);
    }
    let _ = set.verify(&text);
    let _ = set.verify(&text[..text.floor_char_boundary(text.len() / 2)]);
});
