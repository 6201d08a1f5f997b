//! The RFC 1929 request parser alone: no input may panic, a complete parse
//! never claims more bytes than given, and the fields it returns re-encode
//! to exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socks5::{encode_userpass_request, parse_userpass_request, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete { value, consumed }) = parse_userpass_request(data) {
        assert!(consumed <= data.len());
        let mut again = Vec::new();
        encode_userpass_request(value.username, value.password, &mut again).expect("parsed fields fit");
        assert_eq!(&again[..], &data[..consumed]);
    }
});
