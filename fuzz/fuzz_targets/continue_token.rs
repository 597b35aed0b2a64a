//! `continue=` as a client sends it: `ContinueToken::decode`.
//!
//! Invariants:
//! - decoding never panics;
//! - a decoded token re-encodes to a token that decodes to itself, and has a start name;
//! - a token the server makes (any position, any non-empty start name) decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_apiserver::spaces::paging::ContinueToken;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        if let Ok(token) = ContinueToken::decode(input) {
            assert!(!token.start.is_empty(), "{input:?} decoded to a token with no start");
            let encoded = token.encode();
            assert_eq!(
                ContinueToken::decode(&encoded),
                Ok(token.clone()),
                "{input:?} -> {encoded:?}"
            );
            // A canonical token is its own encoding.
            assert_eq!(ContinueToken::decode(&encoded).map(|t| t.encode()), Ok(encoded));
        }
    }

    // The input as a token the server makes: 8 bytes of position, then the start name.
    if data.len() > 8 {
        let (position, start) = data.split_at(8);
        if let Ok(start) = std::str::from_utf8(start) {
            let token = ContinueToken {
                position: u64::from_le_bytes(position.try_into().unwrap_or_default()),
                start: start.to_owned(),
            };
            let encoded = token.encode();
            assert_eq!(ContinueToken::decode(&encoded), Ok(token), "{encoded:?}");
        }
    }
});
