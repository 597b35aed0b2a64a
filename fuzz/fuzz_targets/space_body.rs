//! A Space body as a client sends it to create or update, decoded as the server does (`api::decode::space`, which
//! finds unknown fields for `fieldValidation`), then the checks `create` and `replace` run on it
//! (`validation::name`, `validation::space`).
//!
//! Invariants:
//! - decoding and validation never panic;
//! - the server's decoding gives the same Space as a plain one, and `Strict` refuses exactly the bodies with unknown
//!   fields (a path may be empty: `{"": 1}` has an unknown field named "", as kube-apiserver says too);
//! - a Space the server serializes has no unknown fields;
//! - `validation::name` reports `FieldValueInvalid` exactly when the name is not a DNS-1123 label, and a name it
//!   accepts is always a DNS-1123 label;
//! - a Space compared with itself as the current one has only apiVersion/kind to complain about;
//! - a new Space that sets any `tenancy.loft.sh/` label or annotation is refused;
//! - what the server would send back (the Space serialized) decodes again and serializes the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_apiserver::api::{self, Space};
use tenancy_apiserver::spaces::validation::{self, MANAGED_PREFIX};
use tenancy_apiserver::spaces::Problem;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn check_name(name: &str) {
    let causes = validation::name(name);
    let invalid = causes.iter().any(|c| c.problem == Problem::Invalid);
    assert_eq!(invalid, !name.is_empty() && !is_dns_label(name), "{name:?}: {causes:?}");
    if causes.is_empty() {
        assert!(is_dns_label(name), "{name:?} accepted");
    }
    for cause in &causes {
        assert_eq!(cause.field, "metadata.name", "{cause:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let plain = serde_json::from_value::<Space>(value.clone());
    let Ok((space, unknown)) = api::decode::space(value) else {
        assert!(plain.is_err(), "only the server's decoding failed");
        return;
    };
    assert_eq!(plain.ok().as_ref(), Some(&space), "the two decodings differ");
    let strict = api::decode::FieldValidation::Strict.judge(&unknown);
    assert_eq!(strict.is_err(), !unknown.is_empty(), "{strict:?}");

    // As `Writer::create` does: generateName first, then the name and the space.
    let mut name = space.name().to_owned();
    if name.is_empty() {
        if let Some(prefix) = space.metadata.generate_name.as_deref().filter(|p| !p.is_empty()) {
            name = format!("{prefix}x7k2q");
        }
    }
    check_name(&name);
    check_name(space.name());
    let causes = validation::space(&space, None);

    let managed = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.as_ref()
            .is_some_and(|m| m.keys().any(|k| k.starts_with(MANAGED_PREFIX)))
    };
    if managed(&space.metadata.labels) || managed(&space.metadata.annotations) {
        assert!(
            causes.iter().any(|c| c.problem == Problem::Forbidden),
            "managed keys set on create: {causes:?}"
        );
    }

    // Against itself (an update that changes nothing).
    let causes = validation::space(&space, Some(&space));
    let wrong_type = space.api_version != api::GROUP_VERSION || space.kind != api::space::KIND;
    assert_eq!(causes.len(), usize::from(wrong_type), "{causes:?}");

    // What the server answers with.
    let sent = serde_json::to_vec(&space).expect("a decoded Space serializes");
    let (_, unknown) = api::decode::space(serde_json::from_slice(&sent).expect("JSON")).expect("decodes");
    assert!(unknown.is_empty(), "the server's own answer has unknown fields {unknown:?}");
    let again: Space = serde_json::from_slice(&sent).unwrap_or_else(|e| {
        panic!(
            "a serialized Space does not decode: {e}: {}",
            String::from_utf8_lossy(&sent)
        )
    });
    let resent = serde_json::to_vec(&again).expect("serializes");
    assert_eq!(
        String::from_utf8_lossy(&sent),
        String::from_utf8_lossy(&resent),
        "serialization is not stable"
    );
});
