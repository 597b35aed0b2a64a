//! An AccountQuota with a connected cluster out of reach: that cluster's shares stay as they are (as the quota's status
//! last recorded them), the rest of the quota is divided without it, and headroom moves again once it is back.

use std::time::Duration;

use serde_json::Value;

use super::spaces::shared;
use crate::harness::{account, create_space, env, eventually, unique};
use crate::quota::create_pod;

const SETTLE: Duration = Duration::from_secs(60);

/// The pods share the quota's status records for `space`.
fn recorded_pods(quota: &str, space: &str) -> Option<i64> {
    let out = env()
        .kubectl("admin")
        .run(&["get", "accountquota", quota, "-o", "json"])
        .ok();
    let quota: Value = serde_json::from_str(&out).unwrap_or_default();
    quota["status"]["spaces"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == space)?["hard"]["pods"]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn an_account_quota_divides_without_a_cluster_out_of_reach_and_leaves_its_shares_as_they_are() {
    let x = shared();
    let _turn = x.alone();
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, group, quota) = (unique("reach"), unique("team"), unique("aq"));
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: AccountQuota\nmetadata:\n  name: {quota}\nspec:\n  account: {acc}\n  \
quota:\n    hard: {{pods: \"4\"}}\n"
    ));
    let tenant = env.kubectl_as(&unique("member"), &[&group]);
    let (here, there) = (unique("oh"), unique("ox"));
    create_space(&tenant, &here);
    create_space(&tenant, &x.space(&there));
    // Both idle: two pods each.
    eventually(SETTLE, || {
        let shares = (recorded_pods(&quota, &here), recorded_pods(&quota, &x.space(&there)));
        if shares == (Some(2), Some(2)) {
            Ok(())
        } else {
            Err(shares)
        }
    });

    let outage = x.outage();
    // Here starts its two pods. With the other cluster in reach, a third would come from its idle headroom; out of
    // reach, its two stay its own: the third is refused, and stays refused.
    for i in 0..2 {
        eventually(SETTLE, || create_pod(&tenant, &here, &format!("p{i}")));
    }
    std::thread::sleep(Duration::from_secs(5));
    let refused = create_pod(&tenant, &here, "p2").expect_err("a third pod while the other cluster holds two");
    assert!(refused.contains("exceeded quota"), "{refused}");
    assert_eq!(
        recorded_pods(&quota, &x.space(&there)),
        Some(2),
        "the share out of reach was changed"
    );

    // Back in reach: its idle headroom moves to where the pods are, down to the last pod.
    outage.end();
    eventually(SETTLE, || create_pod(&tenant, &here, "p2"));
    eventually(SETTLE, || create_pod(&tenant, &here, "p3"));
    eventually(SETTLE, || match recorded_pods(&quota, &x.space(&there)) {
        Some(0) => Ok(()),
        other => Err(other),
    });
}
