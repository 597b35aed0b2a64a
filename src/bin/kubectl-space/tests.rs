//! Rendering the server's Tables as kubectl prints them.

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
