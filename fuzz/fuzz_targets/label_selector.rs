//! `labelSelector=` as a client sends it: `LabelSelector::parse`, then `matches` on a few label sets.
//!
//! Invariants:
//! - parsing and matching never panic;
//! - a blank selector parses and matches everything;
//! - no labels and an empty label map are the same to every selector;
//! - apimachinery compatibility: whatever `labels.Parse` accepts for a single valid key or value is accepted here and
//!   means the same. Every valid label value `v` (and every valid key `k`) must be selectable with `k=v`, `k==v`,
//!   `k!=v`, `k in (v)`, `k notin (v)`, `k` and `!k` — including words the lexer also knows as operators (`in`,
//!   `notin`), which apimachinery reads as identifiers wherever a key or value is expected.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tenancy_apiserver::spaces::selector::LabelSelector;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 bytes (apimachinery's qualified-name part and label value).
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// apimachinery's `IsValidLabelValue`.
fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

/// apimachinery's `IsDNS1123Subdomain`.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// apimachinery's `IsQualifiedName`: `[prefix/]name`.
fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

fn parse(selector: &str) -> LabelSelector {
    LabelSelector::parse(selector)
        .unwrap_or_else(|e| panic!("apimachinery accepts {selector:?}, LabelSelector::parse refused it: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    let maps = [
        BTreeMap::new(),
        labels(&[("env", "dev")]),
        labels(&[("env", "prod"), ("tier", "web"), ("frozen", "")]),
        labels(&[
            ("tenancy.loft.sh/account", "team-a"),
            ("tenancy.loft.sh/shared", "true"),
        ]),
        labels(&[("replicas", "3"), ("version", "-12"), ("big", "9223372036854775807")]),
        labels(&[("in", "notin"), ("notin", "in"), ("a", "in")]),
    ];

    if let Ok(selector) = LabelSelector::parse(input) {
        for map in &maps {
            let _ = selector.matches(Some(map));
        }
        assert_eq!(
            selector.matches(None),
            selector.matches(Some(&BTreeMap::new())),
            "{input:?}: absent labels and empty labels differ"
        );
        if input.trim().is_empty() {
            assert!(
                maps.iter().all(|m| selector.matches(Some(m))),
                "blank {input:?} must match everything"
            );
        }
    } else {
        assert!(!input.trim().is_empty(), "blank selector {input:?} refused");
    }

    // The input as a value of key "k".
    if is_label_value(input) {
        let v = input;
        let with = labels(&[("k", v)]);
        let other = labels(&[("k", "some-other-value")]);
        for selector in [format!("k={v}"), format!("k=={v}"), format!("k in ({v})")] {
            let parsed = parse(&selector);
            assert!(parsed.matches(Some(&with)), "{selector:?} must match k={v:?}");
            assert!(
                !parsed.matches(Some(&other)) || v == "some-other-value",
                "{selector:?} matched another value"
            );
            assert!(!parsed.matches(None), "{selector:?} matched no labels");
        }
        for selector in [format!("k!={v}"), format!("k notin ({v})")] {
            let parsed = parse(&selector);
            assert!(!parsed.matches(Some(&with)), "{selector:?} must not match k={v:?}");
            assert!(parsed.matches(None), "{selector:?} must match no labels");
        }
    }

    // The input as a key.
    if is_label_key(input) {
        let k = input;
        let with = labels(&[(k, "x")]);
        let exists = parse(k);
        assert!(
            exists.matches(Some(&with)) && !exists.matches(None),
            "{k:?} as an existence test"
        );
        let absent = parse(&format!("!{k}"));
        assert!(
            !absent.matches(Some(&with)) && absent.matches(None),
            "{k:?} as an absence test"
        );
        let equal = parse(&format!("{k}=x"));
        assert!(equal.matches(Some(&with)), "{k:?}=x");
    }
});
