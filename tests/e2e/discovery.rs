//! Registration and discovery: kube-apiserver finds the group, kubectl resolves `spaces`, `sp` and the category, and
//! the Table prints the documented columns.

use crate::harness::{curl, env, front_proxy};

#[test]
fn apiservice_is_available() {
    let status = env()
        .kubectl("admin")
        .run(&[
            "get",
            "apiservice",
            "v1.tenancy.loft.sh",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ])
        .ok();
    assert_eq!(status, "True");
}

#[test]
fn kubectl_resolves_the_resource_short_name_and_category() {
    let env = env();
    let resources = env
        .kubectl("alice")
        .run(&["api-resources", "--api-group=tenancy.loft.sh", "--no-headers"])
        .ok();
    let spaces_line = resources.lines().find(|l| l.starts_with("spaces")).unwrap_or_default();
    let fields: Vec<&str> = spaces_line.split_whitespace().collect();
    assert_eq!(
        fields,
        ["spaces", "sp", "tenancy.loft.sh/v1", "false", "Space"],
        "{resources}"
    );
    for args in [["get", "sp"], ["get", "tenancy"], ["get", "spaces.tenancy.loft.sh"]] {
        // As admin, who sees every namespace whatever else the run has created so far.
        let out = env.kubectl("admin").run(&args).ok();
        assert!(out.starts_with("NAME"), "{args:?}: {out}");
    }
}

#[test]
fn aggregated_discovery_lists_the_group() {
    let env = env();
    let args = env.apiserver_as("alice", &["system:authenticated"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend([
        "-H",
        "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    ]);
    let (code, body) = curl(&format!("{}/apis", env.var("APISERVER_URL")), &args);
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    let group = doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "tenancy.loft.sh")
        .unwrap_or_else(|| panic!("group missing from {body}"));
    let resource = &group["versions"][0]["resources"][0];
    assert_eq!(resource["resource"], "spaces");
    assert_eq!(resource["scope"], "Cluster");
    assert_eq!(group["versions"][0]["freshness"], "Current");
}

#[test]
fn the_server_answers_discovery_v2_itself_with_an_etag() {
    // The aggregator asks our /apis with the v2 Accept as a trusted proxy; a 304 on If-None-Match spares it the body.
    let env = env();
    let mut base = front_proxy("system:kube-aggregator", &[]);
    base.extend([
        "-H".to_owned(),
        "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".to_owned(),
    ]);
    let url = format!("{}/apis", env.var("SERVER_URL"));
    let mut with_headers = base.clone();
    with_headers.push("-i".to_owned());
    let args: Vec<&str> = with_headers.iter().map(String::as_str).collect();
    let (code, response) = curl(&url, &args);
    assert_eq!(code, 200, "{response}");
    let lower = response.to_lowercase();
    assert!(
        lower.contains("content-type: application/json;g=apidiscovery.k8s.io;v=v2;as=apigroupdiscoverylist"),
        "{response}"
    );
    let etag = response
        .lines()
        .find_map(|l| l.strip_prefix("etag: ").or_else(|| l.strip_prefix("ETag: ")))
        .expect("an ETag header")
        .trim()
        .to_owned();
    let mut conditional = base;
    conditional.extend(["-H".to_owned(), format!("If-None-Match: {etag}")]);
    let args: Vec<&str> = conditional.iter().map(String::as_str).collect();
    let (code, body) = curl(&url, &args);
    assert_eq!((code, body.as_str()), (304, ""));
}

#[test]
fn table_prints_name_account_phase_age_and_wide_adds_creator_shared_and_domain() {
    let env = env();
    let admin = env.kubectl("admin");
    let out = admin.run(&["get", "spaces"]).ok();
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ACCOUNT", "CLUSTER", "PHASE", "AGE"], "{out}");
    let out = admin.run(&["get", "spaces", "-o", "wide"]).ok();
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ACCOUNT", "CLUSTER", "PHASE", "AGE", "CREATOR", "SHARED", "DOMAIN"],
        "{out}"
    );
    // A row object lets kubectl add labels client-side.
    let out = env
        .kubectl("admin")
        .run(&["get", "space", "kube-system", "--show-labels"])
        .ok();
    assert!(out.contains("kubernetes.io/metadata.name=kube-system"), "{out}");
}

#[test]
fn json_and_metadata_representations_round_trip_the_namespace() {
    let env = env();
    let admin = env.kubectl("admin");
    let namespace: serde_json::Value =
        serde_json::from_str(&admin.run(&["get", "namespace", "kube-system", "-o", "json"]).ok()).expect("json");
    let space: serde_json::Value =
        serde_json::from_str(&admin.run(&["get", "space", "kube-system", "-o", "json"]).ok()).expect("json");
    assert_eq!(space["apiVersion"], "tenancy.loft.sh/v1");
    assert_eq!(space["kind"], "Space");
    for field in ["name", "uid", "resourceVersion", "creationTimestamp", "labels"] {
        assert_eq!(space["metadata"][field], namespace["metadata"][field], "{field}");
    }
    assert_eq!(space["status"]["phase"], "Active");

    let args = env.apiserver_as("root", &["system:masters", "system:authenticated"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend([
        "-H",
        "Accept: application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    ]);
    let (code, body) = curl(
        &format!("{}/apis/tenancy.loft.sh/v1/spaces", env.var("APISERVER_URL")),
        &args,
    );
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert!(list["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty()));
}

#[test]
fn kubectl_explain_reads_the_openapi_schema_and_apply_is_offered_no_strategic_merge_patch() {
    let env = env();
    let alice = env.kubectl("alice");
    let explained = alice.run(&["explain", "space.spec"]).ok();
    assert!(
        explained.contains("KIND:       Space") && explained.contains("account") && explained.contains("finalizers"),
        "{explained}"
    );
    let explained = alice.run(&["explain", "space.metadata.labels"]).ok();
    assert!(explained.contains("map[string]string"), "{explained}");

    // The v3 document kube-apiserver lists and proxies to kubectl.
    let root: serde_json::Value =
        serde_json::from_str(&alice.run(&["get", "--raw", "/openapi/v3"]).ok()).expect("json");
    let url = root["paths"]["apis/tenancy.loft.sh/v1"]["serverRelativeURL"]
        .as_str()
        .expect("listed")
        .to_owned();
    assert!(url.contains("?hash="), "{url}");
    let document = alice.run(&["get", "--raw", &url]).ok();
    let value: serde_json::Value = serde_json::from_str(&document).expect("json");
    let patch = &value["paths"]["/apis/tenancy.loft.sh/v1/spaces/{name}"]["patch"]["requestBody"]["content"];
    let types: Vec<&str> = patch
        .as_object()
        .expect("patch content")
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        types.contains(&"application/merge-patch+json") && types.contains(&"application/apply-patch+yaml"),
        "{types:?}"
    );
    assert!(!document.contains("strategic-merge-patch"));
    let gvk = &value["components"]["schemas"]["io.loft.tenancy.v1.Space"]["x-kubernetes-group-version-kind"][0];
    assert_eq!(
        (gvk["group"].as_str(), gvk["kind"].as_str()),
        (Some("tenancy.loft.sh"), Some("Space"))
    );
}
