//! A PATCH body, as `Writer::patch` handles one: the input is tried both as a JSON merge patch
//! (`application/merge-patch+json`) and as a JSON patch (`application/json-patch+json`), applied to a fixed space's
//! JSON, decoded back to a Space and validated against the space as it was.
//!
//! Invariants:
//! - nothing panics (neither the patch libraries nor decoding nor validation);
//! - an empty patch (`[]`, `{}`) changes nothing and validates;
//! - a merge patch that leaves `apiVersion`, `kind`, `metadata` and `spec` alone validates whenever it decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tenancy_apiserver::api::Space;
use tenancy_apiserver::spaces::validation;

/// A space as `Space::from_namespace` shows one: account label, creator annotation, finalizers and phase.
const CURRENT: &str = r#"{
  "apiVersion": "tenancy.loft.sh/v1",
  "kind": "Space",
  "metadata": {
    "name": "team-a-dev",
    "uid": "6f1c1a8e-8d6b-4a55-9a8b-0d3f4c1e2b7a",
    "resourceVersion": "48213",
    "creationTimestamp": "2025-11-04T09:12:33Z",
    "labels": {
      "kubernetes.io/metadata.name": "team-a-dev",
      "tenancy.loft.sh/account": "team-a",
      "env": "dev"
    },
    "annotations": {
      "tenancy.loft.sh/creator": "alice",
      "owner": "alice@example.com"
    }
  },
  "spec": { "account": "team-a", "finalizers": ["kubernetes"] },
  "status": { "phase": "Active" }
}"#;

fn current() -> (Space, Value) {
    let space: Space = serde_json::from_str(CURRENT).expect("fixed space");
    // As `Writer::patch` does: the document is the space serialized, not the literal above.
    let document = serde_json::to_value(&space).expect("serializes");
    (space, document)
}

/// `Writer::patch` after the patch applied: decode, then `replace`'s validation against the current space.
fn decode_and_validate(document: Value, current: &Space) -> Option<Vec<String>> {
    let space: Space = serde_json::from_value(document).ok()?;
    let _ = validation::name(space.name());
    let causes = validation::space(&space, Some(current));
    Some(causes.into_iter().map(|c| format!("{c:?}")).collect())
}

fuzz_target!(|data: &[u8]| {
    let (current, document) = current();

    // application/merge-patch+json
    if let Ok(patch) = serde_json::from_slice::<Value>(data) {
        let mut merged = document.clone();
        json_patch::merge(&mut merged, &patch);
        let causes = decode_and_validate(merged.clone(), &current);
        if let Value::Object(fields) = &patch {
            if fields.is_empty() {
                assert_eq!(merged, document, "{{}} changed the space");
            }
            let untouched = !["apiVersion", "kind", "metadata", "spec"]
                .iter()
                .any(|k| fields.contains_key(*k));
            if let (true, Some(causes)) = (untouched, &causes) {
                assert!(
                    causes.is_empty(),
                    "merge patch {patch} left the checked fields alone: {causes:?}"
                );
            }
        }
    }

    // application/json-patch+json
    if let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(data) {
        let mut patched = document.clone();
        // A failed patch is answered with 422 and its document dropped, so it is not looked at. (json-patch 4.2 does
        // not fully revert a failed `move` whose `path` cannot be added to: the `from` value stays removed.)
        if json_patch::patch_unsafe(&mut patched, &patch).is_ok() {
            if patch.0.is_empty() {
                assert_eq!(patched, document, "[] changed the space");
            }
            let _ = decode_and_validate(patched, &current);
        }
    }
});
