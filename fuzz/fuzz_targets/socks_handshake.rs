//! The SOCKS handshake (`tunneld::parsers::socks::Handshake`) on
//! `SPLIT BYTES...`: the client's bytes fed in pieces of SPLIT bytes (0:
//! all at once). Never a panic; a request or a refusal ends the handshake;
//! the outcome, replies and leftover included, is the same as when the
//! bytes come all at once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld::parsers::socks::{Handshake, Step};

/// Feeds `input` in `split`-byte pieces (a `Reply` is followed by an empty
/// feed, as a driver does); returns the replies and the last step, with the
/// bytes never fed appended to a request's leftover.
fn drive(input: &[u8], split: usize) -> (Vec<Vec<u8>>, Step) {
    let mut handshake = Handshake::new();
    let mut replies = Vec::new();
    let mut pieces = input.chunks(split.max(1));
    let mut next: &[u8] = &[];
    loop {
        match handshake.feed(next) {
            Step::NeedMore => match pieces.next() {
                Some(piece) => next = piece,
                None => return (replies, Step::NeedMore),
            },
            Step::Reply(reply) => {
                assert!(replies.is_empty(), "a second method reply: {reply:?}");
                replies.push(reply);
                next = &[];
            }
            end => {
                match handshake.feed(b"more") {
                    Step::Refuse { reply, .. } => assert!(reply.is_empty()),
                    other => panic!("fed after {end:?}, it gave {other:?}"),
                }
                return match end {
                    Step::Request { request, mut leftover } => {
                        leftover.extend(pieces.flatten());
                        (replies, Step::Request { request, leftover })
                    }
                    refuse => (replies, refuse),
                };
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let split = if split == 0 { input.len() } else { usize::from(split) };
    assert_eq!(drive(input, split), drive(input, input.len()), "split {split}");
});
