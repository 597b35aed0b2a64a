//! Templates that stay in force: parameters a SpaceTemplate declares, checked before a space is made; the record of
//! what each template did, readable by the space's owners; and accounts with `spec.space.sync: true`, whose spaces
//! follow their templates' edits while other accounts keep what their spaces were made with. All as tenants with only
//! their account's RBAC.

use std::time::Duration;

use crate::harness::{env, eventually, space, unique, Kubectl};
use crate::sites::Site;

const SETTLE: Duration = Duration::from_secs(20);
/// How long a synced space may take to reach a template's new version (the repair loop runs after every change, at
/// least every 10 s, a few spaces per pass).
const CONVERGE: Duration = Duration::from_secs(60);

/// YAML for an Account of `group` naming `templates`, syncing them or not.
fn account(name: &str, group: &str, templates: &[&str], sync: bool) -> String {
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {name}\nspec:\n  \
subjects: [{{kind: Group, name: {group}}}]\n  space: {{limit: 5, templates: [{}], sync: {sync}}}\n",
        templates.join(", ")
    )
}

/// YAML for a SpaceTemplate: `parameters` and `objects` are YAML flow items, one per line.
fn template(name: &str, parameters: &[&str], objects: &[&str]) -> String {
    let list = |items: &[&str]| items.iter().map(|i| format!("  - {i}\n")).collect::<String>();
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata:\n  name: {name}\nspec:\n  \
parameters:\n{}  objects:\n{}",
        list(parameters),
        list(objects)
    )
}

/// A ConfigMap object of a template.
fn config_map(name: &str, data: &str) -> String {
    format!("{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}}}, data: {{{data}}}}}")
}

/// A Space with template parameters (`key: value` lines).
fn space_with(name: &str, parameters: &[(&str, &str)]) -> String {
    let mut yaml = space(name);
    if !parameters.is_empty() {
        yaml.push_str("spec:\n  templateParameters:\n");
        for (key, value) in parameters {
            yaml.push_str(&format!("    {key}: {value:?}\n"));
        }
    }
    yaml
}

/// Creates a space as `user`, retried while the account is still new to kube-apiserver or the server; the result once
/// the server answered about the space itself.
fn create(user: &Kubectl, manifest: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec!["create", "-f", "-"];
    args.extend(extra);
    eventually(SETTLE, || {
        let run = user.run_with_stdin(&args, Some(manifest));
        if run.success || run.stderr.contains("templateParameters") {
            Ok(run)
        } else {
            Err((run.stdout, run.stderr))
        }
    })
}

/// Namespace `name` is not in the cluster `admin` is the admin of.
fn no_namespace(admin: &Kubectl, name: &str) {
    let run = admin.run(&["get", "namespace", name, "-o", "name"]);
    assert!(run.stderr.contains("NotFound"), "{name}: {} {}", run.stdout, run.stderr);
}

/// `kubectl get configmap NAME -n NS -o jsonpath=PATH` as `admin`; `None` when it does not exist.
fn config_map_value_at(admin: &Kubectl, ns: &str, name: &str, path: &str) -> Option<String> {
    let run = admin.run(&["get", "configmap", name, "-n", ns, "-o", &format!("jsonpath={path}")]);
    if run.success {
        Some(run.stdout)
    } else {
        assert!(run.stderr.contains("NotFound"), "{}", run.stderr);
        None
    }
}

fn generation(template: &str) -> String {
    env()
        .kubectl("admin")
        .run(&[
            "get",
            "spacetemplate",
            template,
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .ok()
}

#[test]
fn template_parameters_are_checked_before_a_space_is_made_and_fill_in_its_objects() {
    template_parameters_are_checked_before_a_space_is_made_and_fill_in_its_objects_at(&Site::management());
}

#[test]
fn template_parameters_are_checked_before_a_space_is_made_and_fill_in_its_objects_at_the_connected_cluster() {
    template_parameters_are_checked_before_a_space_is_made_and_fill_in_its_objects_at(&Site::connected());
}

/// The spaces asked for in `site`; `${SPACE}` is the namespace's name in its cluster.
fn template_parameters_are_checked_before_a_space_is_made_and_fill_in_its_objects_at(site: &Site) {
    let env = env();
    let there = site.admin();
    let admin = env.kubectl("admin");
    let (acc, group, tpl) = (unique("params"), unique("team"), unique("params-template"));
    admin.apply(&format!(
        "{}---\n{}",
        template(
            &tpl,
            &[
                "{name: team, required: true, validation: \"[a-z]+\", description: the team's name}",
                "{name: size, default: 1Gi}",
            ],
            &[&config_map(
                "settings",
                "team: \"${team}\", size: \"${size}\", space: \"${SPACE}\", other: \"${unknown}\"",
            )],
        ),
        account(&acc, &group, &[&tpl], false),
    ));
    let member_name = unique("member");
    let member = env.kubectl_as(&member_name, &[&group]);

    let missing = unique("p-missing");
    let err = create(&member, &space_with(&site.space(&missing), &[]), &[]).err();
    assert!(
        err.contains("is invalid") && err.contains("spec.templateParameters.team"),
        "{err}"
    );
    assert!(err.contains("Required value"), "{err}");
    no_namespace(&there, &missing);

    let err = create(&member, &space_with(&site.space(&missing), &[]), &["--dry-run=server"]).err();
    assert!(err.contains("spec.templateParameters.team"), "dry run: {err}");

    let invalid = unique("p-invalid");
    let err = create(&member, &space_with(&site.space(&invalid), &[("team", "Blue-1")]), &[]).err();
    assert!(
        err.contains("spec.templateParameters.team") && err.contains("Invalid value"),
        "{err}"
    );
    no_namespace(&there, &invalid);

    let err = create(
        &member,
        &space_with(&site.space(&invalid), &[("team", "blue"), ("tema", "x")]),
        &[],
    )
    .err();
    assert!(
        err.contains("spec.templateParameters.tema") && err.contains("Unsupported value"),
        "{err}"
    );
    no_namespace(&there, &invalid);

    let ns = unique("p-valid");
    let name = site.space(&ns);
    create(&member, &space_with(&name, &[("team", "blue")]), &[]).ok();
    assert_eq!(
        config_map_value_at(&there, &ns, "settings", "{.data.team}").as_deref(),
        Some("blue")
    );
    assert_eq!(
        config_map_value_at(&there, &ns, "settings", "{.data.size}").as_deref(),
        Some("1Gi")
    );
    assert_eq!(
        config_map_value_at(&there, &ns, "settings", "{.data.space}"),
        Some(ns.clone())
    );
    assert_eq!(
        config_map_value_at(&there, &ns, "settings", "{.data.other}").as_deref(),
        Some("${unknown}")
    );
    assert_eq!(
        config_map_value_at(
            &there,
            &ns,
            "settings",
            "{.metadata.labels.tenancy\\.loft\\.sh/template}"
        ),
        Some(tpl.clone())
    );

    // The owner reads the parameters and the record through the space, and the objects themselves.
    let path = "{.spec.templateParameters.team} {.status.templates[0].name} {.status.templates[0].generation} \
{.status.templates[0].status} {.status.templates[0].parameters.size}";
    let seen = member
        .run(&["get", "space", &name, "-o", &format!("jsonpath={path}")])
        .ok();
    assert_eq!(seen, format!("blue {tpl} {} Applied 1Gi", generation(&tpl)));
    site.tenant(&member_name, &[&group])
        .run(&["get", "configmap", "settings", "-n", &ns])
        .ok();

    // Given once: a change is refused.
    let err = member
        .run(&[
            "patch",
            "space",
            &name,
            "--type=merge",
            "-p",
            "{\"spec\":{\"templateParameters\":{\"team\":\"red\"}}}",
        ])
        .err();
    assert!(
        err.contains("spec.templateParameters") && err.contains("immutable"),
        "{err}"
    );
}

#[test]
fn a_synced_templates_edits_reach_existing_spaces_and_an_unsynced_account_keeps_its_version() {
    for site in Site::all() {
        a_synced_templates_edits_reach_existing_spaces_at(&site);
    }
}

fn a_synced_templates_edits_reach_existing_spaces_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let there = site.admin();
    let config_map_value = |ns: &str, name: &str, path: &str| config_map_value_at(&there, ns, name, path);
    let tpl = unique("sync-template");
    let (synced, synced_group) = (unique("synced"), unique("team"));
    let (fixed, fixed_group) = (unique("fixed"), unique("team"));
    let before = template(
        &tpl,
        &["{name: tier, default: bronze}"],
        &[
            &config_map("keep", "v: \"1\""),
            &config_map("change", "v: \"1\", tier: \"${tier}\""),
            &config_map("drop", "v: \"1\""),
        ],
    );
    admin.apply(&format!(
        "{before}---\n{}---\n{}",
        account(&synced, &synced_group, &[&tpl], true),
        account(&fixed, &fixed_group, &[&tpl], false),
    ));
    let first = generation(&tpl);
    let synced_member = env.kubectl_as(&unique("member"), &[&synced_group]);
    let fixed_member = env.kubectl_as(&unique("member"), &[&fixed_group]);
    let spaces = [unique("s-one"), unique("s-two")];
    for name in &spaces {
        create(&synced_member, &space_with(&site.space(name), &[("tier", "gold")]), &[]).ok();
    }
    let kept = unique("f-one");
    create(&fixed_member, &space_with(&site.space(&kept), &[]), &[]).ok();

    admin.apply(&template(
        &tpl,
        &["{name: tier, default: bronze}"],
        &[
            &config_map("keep", "v: \"1\""),
            &config_map("change", "v: \"2\", tier: \"${tier}\""),
            &config_map("added", "v: \"1\", space: \"${SPACE}\""),
        ],
    ));
    let second = generation(&tpl);
    assert_ne!(first, second);

    for name in &spaces {
        eventually(CONVERGE, || {
            let seen = (
                config_map_value(name, "keep", "{.data.v}"),
                config_map_value(name, "change", "{.data.v} {.data.tier}"),
                config_map_value(name, "added", "{.data.space}"),
                config_map_value(name, "drop", "{.data.v}"),
            );
            let want = (
                Some("1".to_owned()),
                Some("2 gold".to_owned()),
                Some(name.clone()),
                None,
            );
            if seen == want {
                Ok(())
            } else {
                Err((site.name().to_owned(), seen))
            }
        });
        // The owner sees the new generation applied, through the space.
        eventually(CONVERGE, || {
            let seen = synced_member
                .run(&[
                    "get",
                    "space",
                    &site.space(name),
                    "-o",
                    "jsonpath={.status.templates[0].generation} {.status.templates[0].status}",
                ])
                .ok();
            if seen == format!("{second} Applied") {
                Ok(())
            } else {
                Err(seen)
            }
        });
    }

    // The account without sync keeps the version its space was made with.
    let seen = fixed_member
        .run(&[
            "get",
            "space",
            &site.space(&kept),
            "-o",
            "jsonpath={.status.templates[0].generation}",
        ])
        .ok();
    assert_eq!(seen, first);
    assert_eq!(config_map_value(&kept, "change", "{.data.v}").as_deref(), Some("1"));
    assert_eq!(config_map_value(&kept, "drop", "{.data.v}").as_deref(), Some("1"));
    assert_eq!(config_map_value(&kept, "added", "{.data.v}"), None);

    // An edit the server cannot carry out (a Secret: no template kind of the server's RBAC, so kube-apiserver refuses
    // it) is recorded as Failed with the reason, for the space's owner to read; the objects before it are applied.
    let second_objects = [
        config_map("keep", "v: \"1\""),
        config_map("change", "v: \"2\", tier: \"${tier}\""),
        config_map("added", "v: \"1\", space: \"${SPACE}\""),
    ];
    let mut failing: Vec<&str> = second_objects.iter().map(String::as_str).collect();
    let before_secret = config_map("before-secret", "v: \"1\"");
    failing.push(&before_secret);
    failing.push("{apiVersion: v1, kind: Secret, metadata: {name: forbidden}, stringData: {k: v}}");
    admin.apply(&template(&tpl, &["{name: tier, default: bronze}"], &failing));
    let third = generation(&tpl);
    let watched = &spaces[0];
    let watched_space = site.space(watched);
    let status = |user: &Kubectl| {
        user.run(&[
            "get",
            "space",
            &watched_space,
            "-o",
            "jsonpath={.status.templates[0].generation} {.status.templates[0].status} \
{.status.templates[0].reason}",
        ])
        .ok()
    };
    let failed = eventually(CONVERGE, || {
        let seen = status(&synced_member);
        if seen.starts_with(&format!("{third} Failed ")) {
            Ok(seen)
        } else {
            Err(seen)
        }
    });
    assert!(
        failed.ends_with("applying Secret \"forbidden\" was refused: Forbidden (403)"),
        "{failed}"
    );
    assert_eq!(
        config_map_value(watched, "before-secret", "{.data.v}").as_deref(),
        Some("1")
    );
    assert_eq!(config_map_value(watched, "change", "{.data.v}").as_deref(), Some("2"));

    // Reverted: the next generation is Applied, and what the failed one made is removed.
    let reverted: Vec<&str> = second_objects.iter().map(String::as_str).collect();
    admin.apply(&template(&tpl, &["{name: tier, default: bronze}"], &reverted));
    let fourth = generation(&tpl);
    eventually(CONVERGE, || {
        let seen = status(&synced_member);
        if seen.trim_end() == format!("{fourth} Applied") {
            Ok(())
        } else {
            Err(seen)
        }
    });
    assert_eq!(config_map_value(watched, "before-secret", "{.data.v}"), None);
    assert_eq!(
        config_map_value(watched, "change", "{.data.v} {.data.tier}").as_deref(),
        Some("2 gold")
    );
}
