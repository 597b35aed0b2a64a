use super::*;

fn quota(name: &str, account: &str, created: i64) -> Arc<AccountQuota> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"),
                         "creationTimestamp": Timestamp::from_second(created).expect("a time").to_string()},
            "spec": {"account": account, "quota": {"hard": {"pods": "4", "requests.cpu": "2"}}},
        }))
        .expect("a quota"),
    )
}

#[test]
fn the_oldest_account_quota_of_an_account_is_in_force() {
    let quotas = [
        quota("b", "blue", 100),
        quota("a", "blue", 200),
        quota("c", "blue", 100),
        quota("d", "red", 50),
    ];
    let name = |account| quota_in_force(&quotas, account).and_then(|q| q.metadata.name.clone());
    // Oldest first, then by name.
    assert_eq!(name("blue").as_deref(), Some("b"));
    assert_eq!(name("red").as_deref(), Some("d"));
    assert_eq!(name("green"), None);
}

#[test]
fn a_share_is_owned_by_its_quota_and_enforced_once_its_status_has_every_limit() {
    let share = share_quota(&quota("q", "blue", 100), "dev");
    let owner = &share.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("AccountQuota", "q", "uid-q")
    );
    assert_eq!(owner.api_version, "config.tenancy.loft.sh/v1");
    assert_eq!(share.metadata.labels.as_ref().expect("labels")[SHARE_LABEL], "q");
    assert!(!enforced(&share), "no status yet");
    let mut partly = share.clone();
    partly.status = serde_json::from_value(serde_json::json!({"hard": {"pods": "0"}})).expect("a status");
    assert!(!enforced(&partly), "requests.cpu is not enforced yet");
    let mut whole = share;
    whole.status =
        serde_json::from_value(serde_json::json!({"hard": {"pods": "0", "requests.cpu": "0"}})).expect("a status");
    assert!(enforced(&whole));
}

#[test]
fn objects_are_filled_in_and_labelled_with_their_template() {
    let template: SpaceTemplate = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "base"},
        "spec": {"parameters": [{"name": "team", "default": "none"}, {"name": "SPACE", "default": "x"}]}
    }))
    .expect("a template");
    let plan = Plan {
        name: "dev".to_owned(),
        creator: "alice".to_owned(),
        owner: Owner::Creator,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        templates: Vec::new(),
        parameters: BTreeMap::from([("team".to_owned(), "blue".to_owned())]),
    };
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "${SPACE}-cm"},
        "data": {"who": "${CREATOR} of ${team} in ${SPACE} (${ACCOUNT})"},
    });
    assert_eq!(
        render(&plan, &template, &object),
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "dev-cm", "namespace": "dev", "labels": {"tenancy.loft.sh/template": "base"}},
            "data": {"who": "alice of blue in dev ()"},
        })
    );
}

#[test]
fn creators_become_user_or_service_account_subjects() {
    assert_eq!(creator_subject("alice").kind, "User");
    let sa = creator_subject("system:serviceaccount:ci:deployer");
    assert_eq!(
        (sa.kind.as_str(), sa.name.as_str(), sa.namespace.as_deref()),
        ("ServiceAccount", "deployer", Some("ci"))
    );
}
