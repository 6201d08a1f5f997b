//! Feeds arbitrary bytes to every server-side parser, the way a session
//! does: greeting, then RFC 1929, then requests, each from the bytes the
//! previous one left. No input may panic, and a parser may never claim to
//! have used more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socks5::{parse_greeting, parse_request, parse_userpass_request, Parsed};

fn consumed<T>(parsed: Parsed<T>, available: usize) -> Option<usize> {
    match parsed {
        Parsed::Complete { consumed, .. } => {
            assert!(consumed > 0 && consumed <= available, "consumed {consumed} of {available}");
            Some(consumed)
        }
        Parsed::Incomplete => None,
    }
}

fuzz_target!(|data: &[u8]| {
    // Each parser on its own, from the start of the input.
    let _ = parse_greeting(data).map(|p| consumed(p, data.len()));
    let _ = parse_userpass_request(data).map(|p| consumed(p.map(|_| ()), data.len()));
    let _ = parse_request(data).map(|p| consumed(p, data.len()));

    // And chained as a session would read them.
    let mut rest = data;
    let Ok(Some(n)) = parse_greeting(rest).map(|p| consumed(p, rest.len())) else { return };
    rest = &rest[n..];
    let Ok(Some(n)) = parse_userpass_request(rest).map(|p| consumed(p.map(|_| ()), rest.len())) else { return };
    rest = &rest[n..];
    while let Ok(Some(n)) = parse_request(rest).map(|p| consumed(p, rest.len())) {
        rest = &rest[n..];
    }
});
