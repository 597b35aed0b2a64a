//! `Accept` as a client sends it, through `negotiate` for every kind of response.
//!
//! Invariants:
//! - negotiation never panics;
//! - no header, or a blank one, is JSON;
//! - JSON is always possible: a header with a bare `application/json`, `application/*` or `*/*` range (no `as=`
//!   parameter, quality above zero) never ends in 406 (`None`), whatever else it lists and in whatever order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_apiserver::http::negotiate::{negotiate, Output, Target};

const TARGETS: [Target; 4] = [Target::Object, Target::List, Target::Watch, Target::Discovery];

/// Whether one media range of the header is a JSON range that asks for no special shape. Written from RFC 9110
/// (media types are case-insensitive, parameters are `;`-separated `name=value` with optional whitespace and quotes),
/// not from the parser under test.
fn bare_json(range: &str) -> bool {
    let mut parts = range.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "application/json" | "application/*" | "*/*") {
        return false;
    }
    let mut positive = true;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"');
        match name.as_str() {
            "as" => return false,
            // Ambiguous repeats are left out: every q must be a number above zero.
            "q" => positive &= value.parse::<f32>().is_ok_and(|q| q > 0.0),
            _ => {}
        }
    }
    positive
}

fuzz_target!(|data: &[u8]| {
    let Ok(accept) = std::str::from_utf8(data) else {
        return;
    };
    let json_listed = accept.split(',').any(bare_json);
    for target in TARGETS {
        let output = negotiate(Some(accept), target);
        if accept.trim().is_empty() {
            assert_eq!(output, Some(Output::Json), "blank Accept {accept:?} for {target:?}");
        }
        if json_listed {
            assert!(
                output.is_some(),
                "406 for {target:?} although {accept:?} lists bare JSON"
            );
        }
        if let Some(Output::DiscoveryV2) = output {
            assert_eq!(target, Target::Discovery, "aggregated discovery for {target:?}");
        }
        assert_eq!(negotiate(None, target), Some(Output::Json));
    }
});
