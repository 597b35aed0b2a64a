use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

fn settings(after: Option<&str>, schedule: Option<&str>, wake: Option<&str>) -> SleepSettings {
    SleepSettings {
        after_inactivity: after.map(str::to_owned),
        schedule: schedule.map(str::to_owned),
        wake_schedule: wake.map(str::to_owned),
        timezone: None,
    }
}

fn asleep(since: &str) -> SleepStatus {
    SleepStatus {
        sleeping: true,
        since: Some(MicroTime(at(since))),
        reason: Some(BY_REQUEST.to_owned()),
        ..SleepStatus::default()
    }
}

fn seen(text: &str, by: &str) -> Seen {
    Seen::to_the_second(at(text), by)
}

#[test]
fn every_field_that_does_not_parse_is_named() {
    let bad = SleepSettings {
        after_inactivity: Some("30 minutes".to_owned()),
        schedule: Some("0 20 * *".to_owned()),
        wake_schedule: Some("0 25 * * *".to_owned()),
        timezone: Some("Mars/Olympus".to_owned()),
    };
    let fields: Vec<&str> = bad.rules().expect_err("invalid").into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["afterInactivity", "schedule", "wakeSchedule", "timezone"]);
    assert!(settings(Some("5s"), None, None).rules().is_err(), "too short");
    assert!(
        settings(None, None, Some("0 7 * * *")).rules().is_err(),
        "a wake schedule alone"
    );
    let good = SleepSettings {
        timezone: Some("Europe/Berlin".to_owned()),
        ..settings(Some("1h30m"), Some("0 20 * * MON-FRI"), Some("0 7 * * 1-5"))
    };
    assert!(good.rules().is_ok());
    assert!(settings(None, Some("@daily"), None).rules().is_ok());
    assert!(
        settings(None, Some("0 0 20 * * *"), None).rules().is_err(),
        "no seconds field"
    );
}

#[test]
fn inactivity_counts_from_the_last_change_or_the_creation() {
    let rules = settings(Some("30m"), None, None).rules().expect("valid");
    let created = at("2026-12-01T10:00:00Z");
    let awake = SleepStatus::default();
    let decide_at = |now: &str, activity: Option<&Seen>| decide(&rules, &awake, activity, created, at(now));
    assert_eq!(decide_at("2026-12-01T10:29:59Z", None), Verdict::Stay);
    assert_eq!(decide_at("2026-12-01T10:30:00Z", None), Verdict::Sleep(BY_INACTIVITY));
    let change = seen("2026-12-01T10:20:00Z", "kubectl");
    assert_eq!(decide_at("2026-12-01T10:45:00Z", Some(&change)), Verdict::Stay);
    assert_eq!(
        decide_at("2026-12-01T10:50:00Z", Some(&change)),
        Verdict::Sleep(BY_INACTIVITY)
    );
    let recorded = SleepStatus {
        last_activity: Some(MicroTime(at("2026-12-01T10:40:00Z"))),
        ..SleepStatus::default()
    };
    assert_eq!(
        decide(&rules, &recorded, Some(&change), created, at("2026-12-01T11:05:00Z")),
        Verdict::Stay
    );
}

#[test]
fn a_sleeping_space_wakes_on_a_later_change_or_its_wake_schedule_only() {
    let rules = settings(None, Some("0 20 * * 1-5"), Some("0 7 * * 1-5"))
        .rules()
        .expect("valid");
    let created = at("2026-11-01T00:00:00Z");
    // Friday 2026-12-04, asleep since 20:00.
    let status = asleep("2026-12-04T20:00:00Z");
    let early = seen("2026-12-04T19:59:00Z", "kubectl");
    assert_eq!(
        decide(&rules, &status, Some(&early), created, at("2026-12-05T09:00:00Z")),
        Verdict::Stay,
        "Saturday: no wake tick, no change since"
    );
    let late = seen("2026-12-05T09:00:01Z", "kubectl-scale");
    assert_eq!(
        decide(&rules, &status, Some(&late), created, at("2026-12-05T09:00:02Z")),
        Verdict::Wake(Some("kubectl-scale".to_owned()))
    );
    assert_eq!(
        decide(&rules, &status, None, created, at("2026-12-07T07:00:00Z")),
        Verdict::Wake(None),
        "Monday 07:00"
    );
}

#[test]
fn a_schedule_sends_a_space_to_sleep_once_per_tick_and_a_tenant_after_it_keeps_it_awake() {
    let rules = SleepSettings {
        timezone: Some("Europe/Berlin".to_owned()),
        ..settings(None, Some("0 20 * * *"), Some("0 7 * * *"))
    }
    .rules()
    .expect("valid");
    let created = at("2026-11-01T00:00:00Z");
    let awake = SleepStatus::default();
    // 20:00 in Berlin is 19:00 UTC in December.
    assert_eq!(
        decide(&rules, &awake, None, created, at("2026-12-05T18:59:00Z")),
        Verdict::Stay
    );
    assert_eq!(
        decide(&rules, &awake, None, created, at("2026-12-05T19:00:00Z")),
        Verdict::Sleep(BY_SCHEDULE)
    );
    let woken = SleepStatus {
        last_activity: Some(MicroTime(at("2026-12-05T21:00:00Z"))),
        ..SleepStatus::default()
    };
    assert_eq!(
        decide(&rules, &woken, None, created, at("2026-12-05T23:00:00Z")),
        Verdict::Stay
    );
    // After the wake tick and before the next sleep tick, an idle space stays awake.
    assert_eq!(
        decide(&rules, &awake, None, created, at("2026-12-06T08:00:00Z")),
        Verdict::Stay
    );
}

fn entry(manager: &str, time: &str, subresource: Option<&str>, fields: serde_json::Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.to_owned()),
        time: Some(Time(at(time))),
        subresource: subresource.map(str::to_owned),
        fields_v1: Some(FieldsV1(fields)),
        operation: Some("Update".to_owned()),
        ..ManagedFieldsEntry::default()
    }
}

#[test]
fn activity_is_the_latest_change_by_anyone_but_the_server_and_the_control_plane() {
    let fields = [
        entry(
            "kubectl-client-side-apply",
            "2026-12-05T10:00:00Z",
            None,
            serde_json::json!({}),
        ),
        entry(
            "kube-controller-manager",
            "2026-12-05T11:00:00Z",
            None,
            serde_json::json!({}),
        ),
        entry("kubectl", "2026-12-05T11:30:00Z", Some("status"), serde_json::json!({})),
        entry(
            FIELD_MANAGER,
            "2026-12-05T12:00:00Z",
            None,
            serde_json::json!({"f:spec": {"f:suspend": {}}}),
        ),
    ];
    assert_eq!(
        latest_change(&fields),
        Some(seen("2026-12-05T10:00:00Z", "kubectl-client-side-apply"))
    );
}

#[test]
fn a_sleeping_workload_is_taken_when_its_value_is_not_the_one_sleep_mode_set() {
    let map = |keys: &[&str]| -> std::collections::BTreeMap<String, String> {
        keys.iter().map(|k| ((*k).to_owned(), "2".to_owned())).collect()
    };
    let scaled = map(&[REPLICAS_ANNOTATION, SCALED_ANNOTATION]);
    assert!(!taken(&scaled, Some(0), None));
    assert!(taken(&scaled, Some(3), None));
    assert!(
        !taken(&map(&[REPLICAS_ANNOTATION]), Some(2), None),
        "recorded, not yet scaled"
    );
    let suspended = map(&[SUSPEND_ANNOTATION]);
    assert!(!taken(&suspended, None, Some(true)));
    assert!(taken(&suspended, None, Some(false)));
    assert!(!taken(&map(&[]), Some(3), None));
    // A space fell asleep at 12:00:01.5: a change known to the second counts from 12:00:02 on; an exact one when it
    // came after.
    let since = at("2026-12-05T12:00:01.5Z");
    assert!(!seen("2026-12-05T12:00:01Z", "kubectl").after(since));
    assert!(seen("2026-12-05T12:00:02Z", "kubectl").after(since));
    assert!(!Seen::exact(at("2026-12-05T12:00:01.2Z"), "a change to Deployment/web").after(since));
    assert!(Seen::exact(at("2026-12-05T12:00:01.7Z"), "alice").after(since));
}

/// The Account CRD checks its `spec.space.sleep` with patterns (kube-apiserver answers 422 for an Account, as the
/// server does for a Space): both accept and refuse the same schedules and durations.
#[test]
fn the_account_crds_patterns_agree_with_the_servers_parser() {
    let crds: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(include_str!("../../deploy/crds.yaml")).expect("deploy/crds.yaml");
    let account = crds
        .iter()
        .find(|crd| crd["spec"]["names"]["kind"] == "Account")
        .expect("the Account CRD");
    let sleep = &account["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["space"]["properties"]["sleep"]["properties"];
    let pattern =
        |field: &str| regex::Regex::new(sleep[field]["pattern"].as_str().expect("a pattern")).expect("a valid pattern");
    let (schedule, duration) = (pattern("schedule"), pattern("afterInactivity"));
    let schedules = [
        ("0 20 * * 1-5", true),
        ("*/15 8-18 * * MON-FRI", true),
        ("0 7 1,15 jan-jun ?", true),
        ("@daily", true),
        ("0 25 * * *", false),
        ("60 * * * *", false),
        ("0 20 * *", false),
        ("0 0 20 * * *", false),
        ("every day", false),
        ("0 20 * * 8", false),
    ];
    for (text, valid) in schedules {
        let parsed = settings(None, Some(text), None).rules().is_ok();
        assert_eq!(parsed, valid, "the server on {text:?}");
        assert_eq!(schedule.is_match(text), valid, "the CRD on {text:?}");
    }
    for (text, valid) in [
        ("30m", true),
        ("1h30m", true),
        ("90s", true),
        ("30", false),
        ("half an hour", false),
    ] {
        assert_eq!(
            settings(Some(text), None, None).rules().is_ok(),
            valid,
            "the server on {text:?}"
        );
        assert_eq!(duration.is_match(text), valid, "the CRD on {text:?}");
    }
}

#[test]
fn an_audited_request_is_activity_unless_the_server_the_control_plane_or_an_admin_made_it() {
    let server = "system:serviceaccount:tenancy-system:tenancy-apiserver";
    let none: Vec<String> = Vec::new();
    assert!(is_tenant("alice", &none, server));
    assert!(is_tenant("system:serviceaccount:team-a:ci", &none, server));
    assert!(!is_tenant(server, &none, server));
    assert!(!is_tenant("system:kube-controller-manager", &none, server));
    assert!(!is_tenant("system:node:worker-1", &none, server));
    assert!(!is_tenant(
        "system:serviceaccount:kube-system:replicaset-controller",
        &none,
        server
    ));
    assert!(!is_tenant("root", &["system:masters".to_owned()], server));
}

#[test]
fn a_schedule_that_never_comes_neither_hangs_nor_sends_to_sleep() {
    let rules = settings(None, Some("0 0 30 2 *"), None)
        .rules()
        .expect("parses, as a CronJob's would");
    let verdict = decide(
        &rules,
        &SleepStatus::default(),
        None,
        at("2020-01-01T00:00:00Z"),
        at("2026-12-05T12:00:00Z"),
    );
    assert_eq!(verdict, Verdict::Stay);
}
