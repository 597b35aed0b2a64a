//! The server's life on a node: serving certificates rotated under it, SIGTERM, and its logs. Each case runs its own
//! replica (the run's server is never touched) and reaches it straight, as kube-apiserver's proxy does.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{curl, env, eventually, front_proxy, namespace, unique, RawWatch, Replica};

const SETTLE: Duration = Duration::from_secs(20);
const ADMIN: (&str, &[&str]) = ("lifecycle-admin", &["system:masters"]);

/// A raw watch with curl, its events arriving on a channel; killed when dropped.
/// A watch of `url` on a replica that may serve with another CA than the run's.
fn curl_watch(url: &str, ca: &Path, extra: &[&str]) -> RawWatch {
    let mut args = front_proxy(ADMIN.0, ADMIN.1);
    // front_proxy trusts the run's serving CA; this replica may serve another.
    let at = args.iter().position(|a| a == "--cacert").expect("--cacert") + 1;
    args[at] = ca.display().to_string();
    args.extend(extra.iter().map(|e| (*e).to_owned()));
    RawWatch::open(url, &args)
}

/// Waits for an event `kind` of `name` on `watch`.
#[track_caller]
fn expect(watch: &mut RawWatch, kind: &str, name: &str, timeout: Duration) {
    let seen = |events: &[Value]| {
        events
            .iter()
            .any(|e| e["type"] == kind && e["object"]["metadata"]["name"] == name)
    };
    assert!(
        watch.read_until(timeout, seen),
        "no {kind} {name} within {timeout:?}; saw {:?}",
        watch.summary()
    );
}

fn watch_url(replica: &Replica, name: &str) -> String {
    format!(
        "{}/apis/tenancy.loft.sh/v1/spaces?watch=1&fieldSelector=metadata.name%3D{name}",
        replica.url
    )
}

/// SHA-256 fingerprint of a PEM certificate file.
fn file_fingerprint(cert: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl x509 failed on {}", cert.display());
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// SHA-256 fingerprint of the certificate a new TLS connection to `port` is served.
fn served_fingerprint(port: u16) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn write_certificates(dir: &Path) {
    let output = Command::new(env().var("SERVER_BIN"))
        .args([
            "certs",
            "--extra-san",
            "localhost",
            "--extra-san",
            "127.0.0.1",
            "--out-dir",
        ])
        .arg(dir)
        .output()
        .expect("tenancy-apiserver certs runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

struct Namespaces(Vec<String>);

impl Namespaces {
    fn create(&mut self, name: &str) {
        env().kubectl("admin").apply(&namespace(name));
        self.0.push(name.to_owned());
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = env()
                .kubectl("admin")
                .run(&["delete", "namespace", name, "--wait=false"]);
        }
    }
}

#[test]
fn a_rotated_serving_certificate_reaches_new_connections_while_open_watches_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_certificates(dir.path());
    let mut replica = Replica::start_with(&[], Some(dir.path()), &[]);
    let old = file_fingerprint(&dir.path().join("tls.crt"));
    assert_eq!(served_fingerprint(replica.port()), old);

    let mut namespaces = Namespaces(Vec::new());
    let (before, after) = (unique("rot-before"), unique("rot-after"));
    // One watch per HTTP version, both on connections made with the old certificate.
    let mut watches: Vec<(RawWatch, &String)> = [(&before, "--http1.1"), (&after, "--http2")]
        .into_iter()
        .map(|(name, version)| {
            let ca = dir.path().join("ca.crt");
            (curl_watch(&watch_url(&replica, name), &ca, &[version]), name)
        })
        .collect();
    namespaces.create(&before);
    expect(&mut watches[0].0, "ADDED", &before, SETTLE);

    // A new CA and certificate, written file by file as `certs` does (the key after its certificate).
    let old_ca = std::fs::read(dir.path().join("ca.crt")).expect("old CA");
    write_certificates(dir.path());
    let new = file_fingerprint(&dir.path().join("tls.crt"));
    assert_ne!(new, old);
    eventually(SETTLE, || {
        let served = served_fingerprint(replica.port());
        if served == new {
            Ok(())
        } else {
            Err(served)
        }
    });
    let (code, body) = curl(
        &format!("{}/readyz", replica.url),
        &["--cacert", &dir.path().join("ca.crt").display().to_string()],
    );
    assert_eq!(code, 200, "a client trusting only the new CA: {body}");
    let old_ca_file = dir.path().join("old-ca.crt");
    std::fs::write(&old_ca_file, old_ca).expect("written");
    let (code, _) = curl(
        &format!("{}/readyz", replica.url),
        &["--cacert", &old_ca_file.display().to_string()],
    );
    assert_eq!(code, 0, "a new connection must not get the old certificate");

    // The watches opened before still deliver.
    namespaces.create(&after);
    expect(&mut watches[1].0, "ADDED", &after, SETTLE);
    env()
        .kubectl("admin")
        .run(&["label", "namespace", &before, "rotated=yes"])
        .ok();
    expect(&mut watches[0].0, "MODIFIED", &before, SETTLE);
    assert!(replica.exited(Duration::ZERO).is_none(), "the replica kept running");
}

#[test]
fn sigterm_fails_readiness_ends_watches_cleanly_finishes_requests_in_flight_and_exits_zero() {
    let grace = Duration::from_secs(20);
    let mut replica = Replica::start_with(&[], None, &["--shutdown-delay", "3s", "--shutdown-grace-period", "20s"]);
    let ca = env().path("SERVER_CA_CERT");
    let mut namespaces = Namespaces(Vec::new());
    let watched = unique("term-watched");
    let mut watches: Vec<(RawWatch, &str)> = [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")]
        .into_iter()
        .map(|(flag, version)| (curl_watch(&watch_url(&replica, &watched), &ca, &[flag]), version))
        .collect();
    namespaces.create(&watched);
    for (watch, _) in &mut watches {
        expect(watch, "ADDED", &watched, SETTLE);
    }

    // A create whose body is still arriving when the signal comes (about 5 s of upload at 2 KB/s).
    let created = unique("term-inflight");
    let body = format!(
        r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{created}","annotations":{{"padding":"{}"}}}}}}"#,
        "x".repeat(10_000)
    );
    let mut args = front_proxy(ADMIN.0, ADMIN.1);
    args.extend(
        [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--limit-rate",
            "2K",
            "--data",
            &body,
        ]
        .map(str::to_owned),
    );
    let url = format!("{}/apis/tenancy.loft.sh/v1/spaces", replica.url);
    let in_flight = std::thread::spawn(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let answer = curl(&url, &refs);
        (answer, Instant::now())
    });
    namespaces.0.push(created.clone());
    std::thread::sleep(Duration::from_secs(1));

    let signalled = Instant::now();
    replica.terminate();
    // Unready during the delay, while still serving.
    let (code, body) = curl(
        &format!("{}/readyz", replica.url),
        &["--cacert", &ca.display().to_string()],
    );
    assert_eq!(code, 500, "readyz right after SIGTERM: {body}");
    assert!(body.contains("shutdown"), "{body}");
    assert!(signalled.elapsed() < Duration::from_secs(3), "checked within the delay");

    for (mut watch, version) in watches {
        let (status, stderr) = watch
            .ended(grace)
            .unwrap_or_else(|| panic!("the {version} watch still open after the grace period"));
        assert!(
            status.success(),
            "the {version} watch must end as a normal end of stream: {status}, curl said {stderr:?}"
        );
    }
    let ((code, body), answered) = in_flight.join().expect("the create's thread");
    assert_eq!(code, 201, "the request in flight at SIGTERM: {body}");
    assert!(
        answered.duration_since(signalled) > Duration::from_secs(3),
        "answered {:?} after SIGTERM: still in flight when the listener closed?",
        answered.duration_since(signalled)
    );

    let status = replica.exited(grace).expect("exited within the grace period");
    assert!(
        status.success(),
        "exit status {status}; log: {}",
        std::fs::read_to_string(&replica.log).unwrap_or_default()
    );
    assert!(signalled.elapsed() < grace, "took {:?}", signalled.elapsed());
    let (code, _) = curl(
        &format!("{}/readyz", replica.url),
        &["--cacert", &ca.display().to_string()],
    );
    assert_eq!(code, 0, "nothing listens any more");
}

#[test]
fn json_logs_give_one_line_per_request_with_verb_user_code_latency_and_audit_id() {
    let replica = Replica::start_with(&[], None, &["--log-format", "json"]);
    let user = unique("logged");
    let audit_id = unique("audit");
    let mut args = front_proxy(&user, &["system:authenticated"]);
    args.extend(["-H".to_owned(), format!("Audit-ID: {audit_id}")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = format!("{}/apis/tenancy.loft.sh/v1/spaces?limit=1", replica.url);
    eventually(SETTLE, || match curl(&url, &refs) {
        (200, _) => Ok(()),
        other => Err(other),
    });
    let line: Value = eventually(SETTLE, || {
        let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["span"]["audit_id"] == audit_id.as_str() && line["fields"]["code"] == 200)
            .ok_or_else(|| log.lines().rev().take(3).collect::<Vec<_>>().join("\n"))
    });
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["message"], "Request", "{line}");
    assert!(
        line["fields"]["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    let span = &line["span"];
    assert_eq!(span["verb"], "list", "{line}");
    assert_eq!(span["user"], user.as_str(), "{line}");
    assert_eq!(span["path"], "/apis/tenancy.loft.sh/v1/spaces", "{line}");
    assert_eq!(span["method"], "GET", "{line}");
}

/// A TLS connection to `port` (the handshake done, nothing sent), or why not.
fn silent_connection(port: u16) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(env().path("SERVER_CA_CERT")).expect("the CA") {
        roots.add(ca.expect("a certificate")).expect("the server's CA");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("a client");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("a timeout");
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(rustls::StreamOwned::new(tls, tcp))
}

/// Whether the server closed `connection` within `timeout` (a read ends, rather than timing out).
fn closed_within(
    connection: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    timeout: Duration,
) -> bool {
    use std::io::Read;
    connection.sock.set_read_timeout(Some(timeout)).expect("a timeout");
    let mut buffer = [0u8; 64];
    match connection.read(&mut buffer) {
        Ok(read) => read == 0,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn connections_past_the_cap_are_closed_at_once_and_idle_ones_after_the_idle_timeout() {
    let replica = Replica::start_with(
        &[],
        None,
        &["--max-connections", "3", "--idle-connection-timeout", "3s"],
    );
    // Three that say nothing after their handshakes (again, while the readiness check's connection is let go).
    let mut silent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while silent.len() < 3 {
        match silent_connection(replica.port()) {
            Ok(connection) => silent.push(connection),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(error) => panic!("three connections could not be made: {error}"),
        }
    }
    let started = Instant::now();
    assert!(
        silent_connection(replica.port()).is_err(),
        "a fourth connection is closed as it is accepted"
    );
    for connection in &mut silent {
        assert!(
            closed_within(connection, Duration::from_secs(15)),
            "an idle connection is closed"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the idle timeout ({:?})",
        started.elapsed()
    );
    // Room again: a request is served.
    let ca = env().path("SERVER_CA_CERT").display().to_string();
    let (code, body) = curl(&format!("{}/readyz", replica.url), &["--cacert", &ca]);
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = replica.request_as(ADMIN.0, ADMIN.1, "GET", "/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("tenancy_apiserver_refused_connections_total ") && !line.ends_with(" 0")),
        "the refusal is counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
