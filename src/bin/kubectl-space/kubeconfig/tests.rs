//! `set_namespace` on real files: what changes, what stays, which file is written.

use super::*;

const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
preferences: {}
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ==
    insecure-skip-tls-verify: false
users:
- name: u
  user:
    token: "12345"
    exec:
      command: helper
      args: ["--flag", "true"]
      env: null
contexts:
- name: other
  context: {cluster: c, user: u, namespace: keep}
- name: mine
  context: {cluster: c, user: u}
current-context: mine
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sets_the_current_contexts_namespace_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", KUBECONFIG);
    let (context, written) = set_namespace(std::slice::from_ref(&path), None, "dev").unwrap();
    assert_eq!((context.as_str(), &written), ("mine", &path));
    let after: Node = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut want: Node = serde_saphyr::from_str(KUBECONFIG).unwrap();
    want.context_mut("mine")
        .unwrap()
        .set("namespace", Node::Str("dev".into()));
    assert_eq!(after, want);
    // Strings that look like other types stay strings.
    let user = &after.get("users").map(|u| match u {
        Node::Seq(items) => items[0].clone(),
        _ => Node::Null,
    });
    let user = user.as_ref().unwrap().get("user").unwrap();
    assert_eq!(user.get("token"), Some(&Node::Str("12345".into())));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("certificate-authority-data: TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ==\n"),
        "{text}"
    );
    // A second use replaces the namespace rather than adding a key.
    set_namespace(std::slice::from_ref(&path), None, "prod").unwrap();
    let again: Node = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut want: Node = serde_saphyr::from_str(KUBECONFIG).unwrap();
    want.context_mut("mine")
        .unwrap()
        .set("namespace", Node::Str("prod".into()));
    assert_eq!(again, want);
}

#[test]
fn writes_the_file_that_defines_the_context_named_by_the_first_current_context() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "a", "apiVersion: v1\nkind: Config\ncurrent-context: mine\n");
    let second = write(
        dir.path(),
        "b",
        KUBECONFIG
            .replace("current-context: mine", "current-context: other")
            .as_str(),
    );
    let missing = dir.path().join("missing");
    let (context, written) = set_namespace(&[missing, first.clone(), second.clone()], None, "dev").unwrap();
    assert_eq!((context.as_str(), written), ("mine", second));
    assert_eq!(
        std::fs::read_to_string(&first).unwrap(),
        "apiVersion: v1\nkind: Config\ncurrent-context: mine\n"
    );
}

#[test]
fn an_unknown_context_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", KUBECONFIG);
    let err = set_namespace(std::slice::from_ref(&path), Some("nope"), "dev").unwrap_err();
    assert!(matches!(err, Error::NoSuchContext { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), KUBECONFIG);
}
