//! Watches over the change log: live grants and revocations, selectors, exact replay from a position, 410 for
//! positions this process did not make, slow watchers, and connected clusters' changes.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, Subject};
use kube::runtime::watcher::Event;

use super::*;
use crate::fixtures::{self, meta, namespace, namespace_role, user};
use crate::state::Update;

fn binding(ns: &str, name: &str, user: &str, rv: u64) -> RoleBinding {
    fixtures::binding(ns, name, "view", vec![fixtures::user_subject(user)], rv)
}

/// A synced cache with namespaces `a`, `b` and a ClusterRole `view` that grants get on namespaces.
fn cache() -> Cache {
    let cache = Cache::new();
    cache.apply(Update::Namespace(Event::Init));
    cache.apply(Update::Namespace(Event::InitApply(namespace("a", 1))));
    cache.apply(Update::Namespace(Event::InitApply(namespace("b", 2))));
    cache.apply(Update::Namespace(Event::InitDone));
    cache.apply(Update::ClusterRole(Event::Init));
    cache.apply(Update::ClusterRole(Event::InitApply(namespace_role(
        "view",
        &["get"],
        3,
    ))));
    cache.apply(Update::ClusterRole(Event::InitDone));
    for update in [
        Update::Account(Event::InitDone),
        Update::SpaceTemplate(Event::InitDone),
        Update::Role(Event::InitDone),
        Update::RoleBinding(Event::InitDone),
        Update::ClusterRoleBinding(Event::InitDone),
    ] {
        cache.apply(update);
    }
    assert!(cache.is_ready());
    cache
}

fn everything() -> Filter {
    Box::new(|_| true)
}

/// (type, name) of the events a started watch gets from the entries it has received so far.
fn drain(started: &mut Started) -> Vec<(EventType, String)> {
    let mut items = Vec::new();
    while let Ok(entry) = started.entries.try_recv() {
        started.session.process(&entry, None, &mut items);
    }
    summary(&items)
}

fn summary(items: &[Item]) -> Vec<(EventType, String)> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Event { kind, namespace, .. } => Some((*kind, namespace.metadata.name.clone().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[test]
fn grants_and_revocations_reach_only_the_affected_user() {
    let cache = cache();
    let mut alice = start(&cache, &user("alice"), everything(), From::Now { initial_events: true }).expect("started");
    let mut bob = start(&cache, &user("bob"), everything(), From::Now { initial_events: true }).expect("started");
    assert!(alice.first.is_empty() && bob.first.is_empty());

    cache.apply(Update::RoleBinding(Event::Apply(binding("a", "rb", "alice", 10))));
    assert_eq!(drain(&mut alice), [(EventType::Added, "a".to_owned())]);
    assert_eq!(drain(&mut bob), []);

    // A label change of a visible namespace is MODIFIED for alice only.
    let mut relabeled = namespace("a", 11);
    relabeled.metadata.labels = Some([("env".to_owned(), "dev".to_owned())].into());
    cache.apply(Update::Namespace(Event::Apply(relabeled)));
    assert_eq!(drain(&mut alice), [(EventType::Modified, "a".to_owned())]);
    assert_eq!(drain(&mut bob), []);

    cache.apply(Update::RoleBinding(Event::Delete(binding("a", "rb", "alice", 12))));
    assert_eq!(drain(&mut alice), [(EventType::Deleted, "a".to_owned())]);
    assert_eq!(drain(&mut bob), []);
}

#[test]
fn the_watches_of_one_user_share_one_view_and_each_still_gets_its_own_exact_events() {
    let cache = cache();
    let now = || From::Now { initial_events: true };
    let mut first = start(&cache, &user("alice"), everything(), now()).expect("started");
    let mut second = start(&cache, &user("alice"), everything(), now()).expect("started");
    let mut bob = start(&cache, &user("bob"), everything(), now()).expect("started");
    let shared = |a: &Started, b: &Started| Arc::ptr_eq(&a.session.view, &b.session.view);
    assert!(shared(&first, &second), "one user at one position: one view");
    assert!(!shared(&first, &bob));

    cache.apply(Update::RoleBinding(Event::Apply(binding("a", "rb", "alice", 10))));
    assert_eq!(drain(&mut first), [(EventType::Added, "a".to_owned())]);
    assert!(!shared(&first, &second), "the second has not moved yet");
    // The second watch moves later, onto the first's view, with the same events.
    cache.apply(Update::RoleBinding(Event::Apply(binding("b", "rb", "alice", 11))));
    cache.apply(Update::RoleBinding(Event::Delete(binding("a", "rb", "alice", 12))));
    let events = [
        (EventType::Added, "a".to_owned()),
        (EventType::Added, "b".to_owned()),
        (EventType::Deleted, "a".to_owned()),
    ];
    assert_eq!(drain(&mut second), events);
    assert_eq!(drain(&mut first), events[1..]);
    assert!(shared(&first, &second));
    assert!(first.session.view.sees("b") && !first.session.view.sees("a"));
    assert_eq!(drain(&mut bob), []);

    // A watch resumed from an older position replays exactly, whatever the others hold.
    let position = first.position;
    let mut resumed = start(
        &cache,
        &user("alice"),
        everything(),
        From::Position(Position::at(position)),
    )
    .expect("in the log");
    assert_eq!(summary(&resumed.first), events);
    assert_eq!(drain(&mut resumed), []);
    assert!(shared(&first, &resumed), "the replay ends on the view the others hold");
}

#[test]
fn namespace_creation_and_deletion_follow_existing_grants() {
    let cache = cache();
    cache.apply(Update::RoleBinding(Event::Apply(binding("c", "rb", "alice", 10))));
    let mut alice = start(&cache, &user("alice"), everything(), From::Now { initial_events: true }).expect("started");
    assert!(alice.first.is_empty(), "c does not exist yet");
    cache.apply(Update::Namespace(Event::Apply(namespace("c", 11))));
    assert_eq!(drain(&mut alice), [(EventType::Added, "c".to_owned())]);
    cache.apply(Update::Namespace(Event::Delete(namespace("c", 12))));
    assert_eq!(drain(&mut alice), [(EventType::Deleted, "c".to_owned())]);
}

#[test]
fn selectors_turn_leaving_objects_into_deletions() {
    let cache = cache();
    cache.apply(Update::RoleBinding(Event::Apply(binding("a", "rb", "alice", 10))));
    let filter: Filter = Box::new(|ns| ns.metadata.labels.as_ref().is_some_and(|l| l.contains_key("env")));
    let mut alice = start(&cache, &user("alice"), filter, From::Now { initial_events: true }).expect("started");
    assert!(alice.first.is_empty());
    let mut labeled = namespace("a", 11);
    labeled.metadata.labels = Some([("env".to_owned(), "dev".to_owned())].into());
    cache.apply(Update::Namespace(Event::Apply(labeled)));
    assert_eq!(drain(&mut alice), [(EventType::Added, "a".to_owned())]);
    cache.apply(Update::Namespace(Event::Apply(namespace("a", 12))));
    assert_eq!(drain(&mut alice), [(EventType::Deleted, "a".to_owned())]);
}

#[test]
fn resuming_from_a_position_replays_exactly_what_followed() {
    let cache = cache();
    cache.apply(Update::RoleBinding(Event::Apply(binding("a", "rb", "alice", 10))));
    let resume_at = cache.read().log.position();
    cache.apply(Update::RoleBinding(Event::Apply(binding("b", "rb", "alice", 11))));
    cache.apply(Update::RoleBinding(Event::Delete(binding("a", "rb", "alice", 12))));
    cache.apply(Update::Namespace(Event::Apply(namespace("z", 13))));
    let started = start(
        &cache,
        &user("alice"),
        everything(),
        From::Position(Position::at(resume_at)),
    )
    .expect("started");
    assert_eq!(
        summary(&started.first),
        [(EventType::Added, "b".to_owned()), (EventType::Deleted, "a".to_owned())]
    );
    let positions: Vec<Position> = started
        .first
        .iter()
        .filter_map(|i| match i {
            Item::Event { position, .. } => Some(position.clone()),
            _ => None,
        })
        .collect();
    // One change each: the grant of b, then the revoke of a.
    assert_eq!(positions, [Position::at(resume_at + 1), Position::at(resume_at + 2)]);

    let now = cache.read().log.position();
    let started = start(&cache, &user("alice"), everything(), From::Position(Position::at(now))).expect("started");
    assert!(started.first.is_empty());
    assert!(matches!(
        start(
            &cache,
            &user("alice"),
            everything(),
            From::Position(Position::at(now + 5))
        ),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn positions_from_another_process_or_before_this_one_are_expired() {
    let cache = cache();
    let now = cache.read().log.position();
    for foreign in [2, now + (1 << 32), now - (1 << 32)] {
        assert!(
            matches!(
                start(
                    &cache,
                    &user("alice"),
                    everything(),
                    From::Position(Position::at(foreign))
                ),
                Err(Error::Expired { .. })
            ),
            "{foreign}"
        );
    }
}

#[test]
fn positions_move_by_changes_whatever_arrives_in_between() {
    let cache = cache();
    cache.apply(Update::RoleBinding(Event::Apply(binding("a", "rb", "alice", 50))));
    let after_binding = cache.read().log.position();
    // A namespace event with an older revision arrives later, from its own stream: the next position all the same.
    cache.apply(Update::Namespace(Event::Apply(namespace("late", 40))));
    assert_eq!(cache.read().log.position(), after_binding + 1);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_closed_with_expired_and_the_writer_never_waits() {
    let cache = cache();
    cache.apply(Update::RoleBinding(Event::Apply(binding("a", "rb", "alice", 10))));
    let started = start(&cache, &user("alice"), everything(), From::Now { initial_events: true }).expect("started");
    // The writer keeps going while the watcher reads nothing.
    for rv in 0..(crate::state::WATCH_BUFFER as u64 + 10) {
        let mut ns = namespace("a", 100 + rv);
        ns.metadata.labels = Some([("n".to_owned(), rv.to_string())].into());
        cache.apply(Update::Namespace(Event::Apply(ns)));
    }
    let (sink, mut received) = tokio::sync::mpsc::channel(16);
    let options = Options {
        bookmarks: false,
        initial_events_end: false,
        timeout: Duration::from_secs(5),
    };
    let encode = |item: &Item| Bytes::from(format!("{item:?}"));
    run(started, options, encode, sink).await;
    let mut last = String::new();
    while let Some(bytes) = received.recv().await {
        last = String::from_utf8_lossy(&bytes).into_owned();
    }
    assert!(last.starts_with("Expired"), "{last}");
}

#[test]
fn one_change_showing_several_spaces_gives_each_event_its_own_position_and_resumes_between_them() {
    let cache = cache();
    let empty = |rv: u64, rules: Vec<PolicyRule>| {
        Update::ClusterRole(Event::Apply(ClusterRole {
            metadata: meta(None, "later", rv),
            rules: Some(rules),
            aggregation_rule: None,
        }))
    };
    cache.apply(empty(10, Vec::new()));
    for (ns, rv) in [("a", 11), ("b", 12)] {
        let mut rb = binding(ns, "rb", "alice", rv);
        rb.role_ref.name = "later".into();
        cache.apply(Update::RoleBinding(Event::Apply(rb)));
    }
    let before = cache.read().log.position();
    // One event: the role gains its rule, and alice sees two spaces at once.
    cache.apply(empty(
        20,
        vec![PolicyRule {
            verbs: vec!["get".into()],
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["namespaces".into()]),
            ..PolicyRule::default()
        }],
    ));
    let started = start(
        &cache,
        &user("alice"),
        everything(),
        From::Position(Position::at(before)),
    )
    .expect("started");
    let events: Vec<(String, Position)> = started
        .first
        .iter()
        .filter_map(|i| match i {
            Item::Event {
                namespace, position, ..
            } => Some((namespace.metadata.name.clone().unwrap_or_default(), position.clone())),
            _ => None,
        })
        .collect();
    // One change, one position: the first event is inside it (named by the space it showed), the last is the position.
    assert_eq!(
        events,
        [
            ("a".to_owned(), Position::inside(before + 1, "a")),
            ("b".to_owned(), Position::at(before + 1))
        ]
    );
    assert_eq!(events[0].1.to_string(), format!("{}.a", before + 1));
    // A client cut off after the first event gets the second, and only it (also from the resourceVersion string).
    let cut = Position::parse(&events[0].1.to_string()).expect("parses");
    let resumed = start(&cache, &user("alice"), everything(), From::Position(cut)).expect("started");
    assert_eq!(summary(&resumed.first), [(EventType::Added, "b".to_owned())]);
    let done = start(
        &cache,
        &user("alice"),
        everything(),
        From::Position(events[1].1.clone()),
    )
    .expect("started");
    assert!(done.first.is_empty());
    assert_eq!(
        cache.read().log.position(),
        before + 1,
        "one change moved the log by one"
    );
}

#[test]
fn a_group_listed_twice_still_loses_access_when_its_binding_goes() {
    let cache = cache();
    let group_binding = |rv: u64| {
        let mut rb = binding("a", "rb", "ignored", rv);
        rb.subjects = Some(vec![Subject {
            kind: "Group".into(),
            name: "team".into(),
            ..Subject::default()
        }]);
        rb
    };
    cache.apply(Update::RoleBinding(Event::Apply(group_binding(10))));
    let mut doubled = user("dup");
    doubled.groups = vec!["team".into(), "team".into()];
    let mut watch = start(&cache, &doubled, everything(), From::Now { initial_events: true }).expect("started");
    assert_eq!(summary(&watch.first), [(EventType::Added, "a".to_owned())]);
    cache.apply(Update::RoleBinding(Event::Delete(group_binding(11))));
    assert_eq!(drain(&mut watch), [(EventType::Deleted, "a".to_owned())]);
}

#[test]
fn not_older_than_serves_own_past_positions_and_refuses_the_rest() {
    let cache = cache();
    let now = cache.read().log.position();
    let log = &cache.read().log;
    assert!(not_older_than(log, &Position::at(now)).is_ok());
    assert!(not_older_than(log, &Position::at(now - 1)).is_ok());
    assert!(matches!(
        not_older_than(log, &Position::at(now + 1)),
        Err(Error::TooLarge { .. })
    ));
    for foreign in [2, now + (1 << 32)] {
        assert!(
            matches!(not_older_than(log, &Position::at(foreign)), Err(Error::Expired { .. })),
            "{foreign}"
        );
    }
}

/// Connected cluster `c2`'s events, as its reflectors send them.
fn connected(update: Update) -> Update {
    Update::Connected {
        cluster: "c2".to_owned(),
        update: Box::new(update),
    }
}

/// `cache()` with cluster `c2` connected and answering: namespaces `a` and `x`, the same `view` ClusterRole.
fn with_connected_cluster() -> Cache {
    let cache = cache();
    cache.apply(Update::Online {
        cluster: "c2".to_owned(),
        online: true,
    });
    for update in [
        Update::Namespace(Event::Init),
        Update::Namespace(Event::InitApply(namespace("a", 1))),
        Update::Namespace(Event::InitApply(namespace("x", 2))),
        Update::Namespace(Event::InitDone),
        Update::ClusterRole(Event::Apply(namespace_role("view", &["get"], 3))),
    ] {
        cache.apply(connected(update));
    }
    cache
}

#[test]
fn a_connected_clusters_grants_show_only_its_own_spaces_and_go_with_it() {
    let cache = with_connected_cluster();
    let mut alice = start(&cache, &user("alice"), everything(), From::Now { initial_events: true }).expect("started");
    assert!(alice.first.is_empty());
    let before = alice.position;

    // Granted `a` in c2: the space c2.a, never this cluster's `a`.
    cache.apply(connected(Update::RoleBinding(Event::Apply(binding(
        "a", "rb", "alice", 10,
    )))));
    assert_eq!(drain(&mut alice), [(EventType::Added, "c2.a".to_owned())]);
    let state = cache.read();
    let subjects = cache.subjects(&user("alice"));
    assert!(state.may_get(&subjects, "c2.a") && !state.may_get(&subjects, "a") && !state.may_get(&subjects, "c2.x"));
    drop(state);

    // An all-namespaces grant in c2 shows all of c2's spaces and none of this cluster's.
    let mut cluster_wide = binding("", "crb", "alice", 11);
    cluster_wide.metadata.namespace = None;
    let cluster_wide = ClusterRoleBinding {
        metadata: cluster_wide.metadata,
        role_ref: cluster_wide.role_ref,
        subjects: cluster_wide.subjects,
    };
    cache.apply(connected(Update::ClusterRoleBinding(Event::Apply(cluster_wide))));
    assert_eq!(drain(&mut alice), [(EventType::Added, "c2.x".to_owned())]);

    // c2 stops answering: its spaces stay, phase Unknown; back again, their phase returns.
    cache.apply(Update::Online {
        cluster: "c2".to_owned(),
        online: false,
    });
    let unknown: Vec<Option<String>> = {
        let state = cache.read();
        ["c2.a", "c2.x"]
            .iter()
            .map(|name| state.namespaces[*name].status.as_ref().and_then(|s| s.phase.clone()))
            .collect()
    };
    assert_eq!(unknown, [Some("Unknown".to_owned()), Some("Unknown".to_owned())]);
    assert_eq!(
        drain(&mut alice),
        [
            (EventType::Modified, "c2.a".to_owned()),
            (EventType::Modified, "c2.x".to_owned())
        ]
    );
    cache.apply(Update::Online {
        cluster: "c2".to_owned(),
        online: true,
    });
    assert_eq!(
        drain(&mut alice),
        [
            (EventType::Modified, "c2.a".to_owned()),
            (EventType::Modified, "c2.x".to_owned())
        ]
    );
    assert!(cache.read().namespaces["c2.a"].status.is_none());

    // A resume from before the grants replays them exactly.
    let resumed = start(
        &cache,
        &user("alice"),
        everything(),
        From::Position(Position::at(before)),
    )
    .expect("resumed");
    let modified = |name: &str| (EventType::Modified, name.to_owned());
    assert_eq!(
        summary(&resumed.first),
        [
            (EventType::Added, "c2.a".to_owned()),
            (EventType::Added, "c2.x".to_owned()),
            modified("c2.a"),
            modified("c2.x"),
            modified("c2.a"),
            modified("c2.x"),
        ]
    );

    // Disconnected: its spaces are deleted, and connecting it again starts from nothing.
    cache.apply(Update::Disconnected("c2".to_owned()));
    assert_eq!(
        drain(&mut alice),
        [
            (EventType::Deleted, "c2.a".to_owned()),
            (EventType::Deleted, "c2.x".to_owned())
        ]
    );
    let fresh = with_namespace_only(&cache);
    assert!(!fresh, "a reconnected cluster must not inherit the old grants");
}

/// Connects c2 again with namespace `a` and no RBAC: whether alice sees c2.a.
fn with_namespace_only(cache: &Cache) -> bool {
    cache.apply(Update::Online {
        cluster: "c2".to_owned(),
        online: true,
    });
    cache.apply(connected(Update::Namespace(Event::Apply(namespace("a", 20)))));
    cache.read().may_get(&cache.subjects(&user("alice")), "c2.a")
}

#[test]
fn a_relist_of_one_clusters_namespaces_leaves_the_others_spaces_alone() {
    let cache = with_connected_cluster();
    let spaces = |cache: &Cache| cache.read().namespaces.keys().cloned().collect::<Vec<_>>();
    assert_eq!(spaces(&cache), ["a", "b", "c2.a", "c2.x"]);
    // The management cluster's namespace watch lists again (after an expired watch): b is gone, c2's spaces stay.
    cache.apply(Update::Namespace(Event::Init));
    cache.apply(Update::Namespace(Event::InitApply(namespace("a", 1))));
    cache.apply(Update::Namespace(Event::InitDone));
    assert_eq!(spaces(&cache), ["a", "c2.a", "c2.x"]);
    // And c2's: x is gone, the management cluster's stay.
    for update in [
        Update::Namespace(Event::Init),
        Update::Namespace(Event::InitApply(namespace("a", 1))),
        Update::Namespace(Event::InitDone),
    ] {
        cache.apply(connected(update));
    }
    assert_eq!(spaces(&cache), ["a", "c2.a"]);
}

#[test]
fn a_clusters_space_domain_shows_in_its_spaces_status_and_a_new_base_reaches_open_watches() {
    let cache = with_connected_cluster();
    cache.apply(connected(Update::RoleBinding(Event::Apply(binding(
        "a", "rb", "alice", 10,
    )))));
    let mut alice = start(
        &cache,
        &user("alice"),
        everything(),
        From::Now { initial_events: false },
    )
    .expect("started");
    let domain_of = |name: &str| {
        let state = cache.read();
        let space = crate::api::Space::from_namespace(&state.namespaces[name]);
        (
            space.status.domain,
            space.status.domain_issuer,
            space.metadata.annotations,
        )
    };
    assert_eq!(domain_of("c2.a").0, None);
    let domains = |base: &str| crate::domains::SpaceDomains::new(Some(base), Some("shared-ca")).expect("valid");
    cache.apply(Update::Domains {
        cluster: Some("c2".to_owned()),
        domains: domains("east.example.com"),
    });
    let (domain, issuer, annotations) = domain_of("c2.a");
    assert_eq!(domain.as_deref(), Some("a.east.example.com"));
    assert_eq!(issuer.as_deref(), Some("shared-ca"));
    // Status only: the namespace's own annotations are as they were.
    assert!(annotations.is_none_or(|a| !a.keys().any(|k| k.starts_with("tenancy.loft.sh/domain"))));
    assert_eq!(drain(&mut alice), [(EventType::Modified, "c2.a".to_owned())]);
    // The same again changes nothing; the management cluster's spaces are not its.
    cache.apply(Update::Domains {
        cluster: Some("c2".to_owned()),
        domains: domains("east.example.com"),
    });
    assert!(drain(&mut alice).is_empty());
    cache.apply(Update::Domains {
        cluster: Some("c2".to_owned()),
        domains: None,
    });
    assert_eq!(domain_of("c2.a").0, None);
    assert_eq!(drain(&mut alice), [(EventType::Modified, "c2.a".to_owned())]);
}
