//! `fieldSelector=` as a client sends it: `FieldSelector::parse`, then `matches` on a few names.
//!
//! Invariants:
//! - parsing and matching never panic;
//! - a blank selector matches every name;
//! - client-go compatibility: a selector built the way client-go builds one
//!   (`fields.OneTermEqualSelector("metadata.name", name)`, which escapes `\`, `,` and `=`) parses and selects exactly
//!   that name, for any name without surrounding whitespace; the same for `!=`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_apiserver::spaces::selector::FieldSelector;

/// apimachinery's `fields.EscapeValue`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const NAMES: &[&str] = &[
    "",
    "team-a",
    "team-a-dev",
    "default",
    "kube-system",
    "a,b",
    "a=b",
    "a\\b",
    " x ",
];

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(selector) = FieldSelector::parse(input) {
        for name in NAMES.iter().copied().chain([input]) {
            let _ = selector.matches(name);
        }
        if input.trim().is_empty() {
            assert!(
                NAMES.iter().all(|n| selector.matches(n)),
                "blank {input:?} must match everything"
            );
        }
    }

    // The input as the name client-go selects.
    if input.trim() == input {
        let equal = format!("metadata.name={}", escape(input));
        let selector = FieldSelector::parse(&equal).unwrap_or_else(|e| panic!("{equal:?} refused: {e}"));
        assert!(selector.matches(input), "{equal:?} must match {input:?}");
        assert!(
            !selector.matches(&format!("{input}-x")),
            "{equal:?} matched another name"
        );

        let not_equal = format!("metadata.name!={}", escape(input));
        let selector = FieldSelector::parse(&not_equal).unwrap_or_else(|e| panic!("{not_equal:?} refused: {e}"));
        assert!(!selector.matches(input), "{not_equal:?} must not match {input:?}");
        assert!(
            selector.matches(&format!("{input}-x")),
            "{not_equal:?} must match another name"
        );

        // Spaces are cluster-scoped: their namespace is always empty.
        let both = format!("metadata.namespace=,metadata.name={}", escape(input));
        let selector = FieldSelector::parse(&both).unwrap_or_else(|e| panic!("{both:?} refused: {e}"));
        assert!(selector.matches(input), "{both:?} must match {input:?}");
    }
});
