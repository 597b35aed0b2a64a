//! Label and field selectors against apimachinery's grammar and matching, including what it refuses.

use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn matches(selector: &str, pairs: &[(&str, &str)]) -> bool {
    LabelSelector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector:?}: {e}"))
        .matches(Some(&labels(pairs)))
}

#[test]
fn empty_selector_matches_everything() {
    assert!(matches("", &[]));
    assert!(matches("  ", &[("a", "b")]));
}

#[test]
fn equality_operators() {
    assert!(matches("env=prod", &[("env", "prod")]));
    assert!(matches("env==prod", &[("env", "prod")]));
    assert!(!matches("env=prod", &[("env", "dev")]));
    assert!(!matches("env=prod", &[]));
    assert!(matches("env!=prod", &[("env", "dev")]));
    assert!(matches("env!=prod", &[]), "!= matches objects without the label");
    assert!(!matches("env!=prod", &[("env", "prod")]));
    assert!(matches("env=", &[("env", "")]));
}

#[test]
fn set_operators() {
    assert!(matches("env in (dev, prod)", &[("env", "dev")]));
    assert!(!matches("env in (dev,prod)", &[("env", "qa")]));
    assert!(!matches("env in (dev,prod)", &[]));
    assert!(matches("env notin (dev,prod)", &[("env", "qa")]));
    assert!(matches("env notin (dev,prod)", &[]));
    assert!(!matches("env notin (dev,prod)", &[("env", "dev")]));
}

#[test]
fn existence_operators() {
    assert!(matches("env", &[("env", "x")]));
    assert!(!matches("env", &[]));
    assert!(matches("!env", &[]));
    assert!(!matches("!env", &[("env", "x")]));
}

#[test]
fn numeric_comparisons() {
    assert!(matches("tier>2", &[("tier", "3")]));
    assert!(!matches("tier>2", &[("tier", "2")]));
    assert!(matches("tier<2", &[("tier", "1")]));
    assert!(!matches("tier<2", &[("tier", "x")]));
    assert!(LabelSelector::parse("tier>x").is_err());
}

#[test]
fn requirements_are_anded() {
    let s = "tenancy.loft.sh/account=team-a,env in (dev),!frozen";
    assert!(matches(s, &[("tenancy.loft.sh/account", "team-a"), ("env", "dev")]));
    assert!(!matches(
        s,
        &[("tenancy.loft.sh/account", "team-a"), ("env", "dev"), ("frozen", "")]
    ));
    assert!(!matches(s, &[("tenancy.loft.sh/account", "team-b"), ("env", "dev")]));
}

#[test]
fn malformed_selectors_are_errors() {
    for bad in [
        "=x",
        "a==",
        "a in dev",
        "a in (dev",
        "a b",
        "-bad=x",
        "a=b c",
        "a=-x",
        "UPPER.example/x=1",
        "a,,b",
        "!",
    ] {
        let parsed = LabelSelector::parse(bad);
        // "a==" is "a equals empty", which apimachinery accepts too.
        if bad == "a==" {
            assert!(parsed.is_ok(), "{bad:?}");
            continue;
        }
        assert!(parsed.is_err(), "{bad:?} parsed as {parsed:?}");
    }
}

#[test]
fn field_selector_on_name() {
    let s = FieldSelector::parse("metadata.name=team-a").expect("valid");
    assert!(s.matches("team-a"));
    assert!(!s.matches("team-b"));
    let s = FieldSelector::parse("metadata.name!=team-a").expect("valid");
    assert!(!s.matches("team-a"));
    assert!(s.matches("team-b"));
    let s = FieldSelector::parse("metadata.name==x,metadata.namespace=").expect("valid");
    assert!(s.matches("x"));
    assert!(FieldSelector::parse("").expect("valid").matches("anything"));
}

#[test]
fn field_selector_on_other_fields_is_rejected() {
    assert_eq!(
        FieldSelector::parse("status.phase=Active"),
        Err(Error::UnknownField("status.phase".to_owned()))
    );
    assert!(FieldSelector::parse("metadata.name").is_err());
}

#[test]
fn the_operator_words_are_ordinary_names_where_a_name_is_expected() {
    assert!(matches("k=in", &[("k", "in")]));
    assert!(matches("k==notin", &[("k", "notin")]));
    assert!(matches("k in (in, notin)", &[("k", "notin")]));
    assert!(matches("in", &[("in", "x")]));
    assert!(matches("in in (a)", &[("in", "a")]));
    assert!(matches("!notin", &[]));
}
