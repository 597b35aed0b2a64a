//! Rendering the server's Tables as kubectl prints them; choosing the account of a template; --param.

use super::*;

fn table() -> Table {
    serde_json::from_value(serde_json::json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "priority": 0},
            {"name": "Account", "type": "string", "format": "", "priority": 0},
            {"name": "Creator", "type": "string", "format": "", "priority": 1},
        ],
        "rows": [
            {"cells": ["team-a-dev", "team-a", "alice"]},
            {"cells": ["x", null, "bob"]},
        ],
    }))
    .unwrap()
}

#[test]
fn columns_are_padded_by_three_spaces_and_priority_columns_wait_for_wide() {
    assert_eq!(
        render(&table(), None, "spaces.tenancy.loft.sh"),
        "NAME         ACCOUNT\nteam-a-dev   team-a\nx            <none>\n"
    );
    assert_eq!(
        render(&table(), Some(Output::Wide), "spaces.tenancy.loft.sh"),
        "NAME         ACCOUNT   CREATOR\nteam-a-dev   team-a    alice\nx            <none>    bob\n"
    );
}

#[test]
fn name_output_prints_resource_slash_name() {
    assert_eq!(
        render(&table(), Some(Output::Name), "spaces.tenancy.loft.sh"),
        "space.tenancy.loft.sh/team-a-dev\nspace.tenancy.loft.sh/x\n"
    );
}

fn accounts() -> Vec<(String, Vec<String>)> {
    vec![
        ("team-a".to_owned(), vec!["default".to_owned(), "web".to_owned()]),
        ("team-b".to_owned(), vec!["default".to_owned()]),
        ("bare".to_owned(), vec![]),
    ]
}

fn refusal(result: Result<String, Error>) -> String {
    result.expect_err("refused").to_string()
}

#[test]
fn a_template_picks_the_one_account_that_applies_it() {
    assert_eq!(choose_account(&accounts(), "web", None).unwrap(), "team-a");
    assert_eq!(choose_account(&accounts(), "web", Some("team-a")).unwrap(), "team-a");
}

#[test]
fn a_template_no_account_or_several_accounts_apply_is_refused_naming_them() {
    let err = refusal(choose_account(&accounts(), "default", None));
    assert!(
        err.contains("several of your accounts: team-a, team-b; choose one with --account"),
        "{err}"
    );
    let err = refusal(choose_account(&accounts(), "db", None));
    assert!(
        err.contains("no account of yours applies template \"db\"")
            && err.contains("team-a (default, web), team-b (default), bare (none)"),
        "{err}"
    );
    let err = refusal(choose_account(&[], "db", None));
    assert!(err.contains("you belong to no account"), "{err}");
    let err = refusal(choose_account(&accounts(), "web", Some("team-b")));
    assert!(
        err.contains("account \"team-b\" does not apply template \"web\"; its templates: default"),
        "{err}"
    );
    let err = refusal(choose_account(&accounts(), "web", Some("elsewhere")));
    assert!(err.contains("\"elsewhere\" is not one of your accounts"), "{err}");
}

#[test]
fn params_are_key_value_pairs_given_once() {
    assert_eq!(
        parse_param("tier=gold=x").unwrap(),
        ("tier".to_owned(), "gold=x".to_owned())
    );
    assert_eq!(parse_param("empty=").unwrap(), ("empty".to_owned(), String::new()));
    assert!(parse_param("=x").is_err());
    assert!(parse_param("tier").is_err());
    let given = parameters(vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]).unwrap();
    assert_eq!(given.len(), 2);
    let err = parameters(vec![("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())])
        .expect_err("twice")
        .to_string();
    assert!(err.contains("--param a is given more than once"), "{err}");
}
