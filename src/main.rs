//! `tenancy-apiserver`: the command line. `serve` runs the extension API server; `certs` makes serving certificates;
//! `connect` and `disconnect` add a cluster to (or take it from) the ones whose spaces it serves.

use tenancy_apiserver::{
    access, authn, authz, backend, certs, clusters, config, connect, controllers, http, metrics, spaces, state, tls,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// jemalloc, not glibc's malloc: glibc keeps what a burst freed (thousands of watches opening, a relist of every
/// namespace) in its arenas, so the process stays at the burst's peak (benches/memory.sh: 134 MB after 3,000 watches
/// had closed, 42 MB before they opened); jemalloc gives freed pages back after a few seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "tenancy-apiserver",
    version,
    about = "Per-tenant views of a shared Kubernetes cluster (tenancy.loft.sh/v1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (for people) or JSON (one object per line, for log pipelines).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve tenancy.loft.sh/v1 behind kube-apiserver's aggregation layer.
    Serve(config::Options),
    /// Connect a cluster: the server's identity there (ServiceAccount, least RBAC, token), its kubeconfig Secret and
    /// Cluster in the management cluster.
    Connect(connect::Connect),
    /// Disconnect a cluster: its Cluster and Secret, and with --kubeconfig the server's identity there.
    Disconnect(connect::Disconnect),
    /// Write a new CA and a serving certificate for the in-cluster Service (ca.crt, tls.crt, tls.key), and what
    /// installs them: the serving Secret (secret.yaml), the APIService's caBundle as a kustomize patch
    /// (apiservice-ca-bundle.yaml) and the Helm chart's values for both (helm-values.yaml).
    Certs {
        /// Directory to write the files into.
        #[arg(long)]
        out_dir: PathBuf,
        /// Name of the Service the APIService points at.
        #[arg(long, default_value = "tenancy-apiserver")]
        service: String,
        /// Namespace of that Service.
        #[arg(long, default_value = "tenancy-system")]
        namespace: String,
        /// More DNS names or IP addresses to put in the certificate.
        #[arg(long = "extra-san")]
        extra_sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Name of the serving Secret the Deployment mounts.
        #[arg(long, default_value = "tenancy-apiserver-serving")]
        secret_name: String,
        /// Also write kustomization.yaml: an overlay of this kustomize base (the repo's deploy/, or a remote
        /// reference) with the Secret and the caBundle, for `kubectl apply -k OUT_DIR`.
        #[arg(long)]
        kustomize_base: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error(transparent)]
    Authn(#[from] authn::Error),
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error(transparent)]
    Certs(#[from] certs::Error),
    #[error(transparent)]
    Connect(#[from] connect::Error),
    #[error("listening on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving")]
    Serve(#[source] std::io::Error),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built at startup");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(options) => serve(options.complete()?).await,
            Command::Connect(args) => {
                connect::connect(&args).await?;
                println!(
                    "cluster {} connected (kubectl get cluster {} shows its status)",
                    args.name, args.name
                );
                Ok(())
            }
            Command::Disconnect(args) => {
                connect::disconnect(&args).await?;
                println!("cluster {} disconnected", args.name);
                Ok(())
            }
            Command::Certs {
                out_dir,
                service,
                namespace,
                extra_sans,
                days,
                secret_name,
                kustomize_base,
            } => {
                let names = certs::service_names(&service, &namespace, &extra_sans);
                let bundle = certs::generate(&names, days)?;
                certs::write(&bundle, &out_dir)?;
                let install = certs::Install {
                    namespace: &namespace,
                    secret_name: &secret_name,
                };
                certs::write_install(&bundle, &install, &out_dir, kustomize_base.as_deref())?;
                let overlay = if kustomize_base.is_some() {
                    format!(", {}", certs::KUSTOMIZATION_FILE)
                } else {
                    String::new()
                };
                println!(
                    "wrote ca.crt, tls.crt, tls.key, {}, {}, {}{overlay} to {} for {}",
                    certs::SECRET_FILE,
                    certs::PATCH_FILE,
                    certs::HELM_VALUES_FILE,
                    out_dir.display(),
                    names.join(", ")
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Each line carries the request span's fields (verb, path,
/// user, Audit-ID) when logged while serving a request.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
}

async fn serve(config: config::Config) -> Result<(), Error> {
    // kube and rustls both build on ring; one process-wide provider keeps them from disagreeing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend::Clients { watch: client, call } = backend::clients(config.kubeconfig.as_deref()).await?;

    // The front-proxy CA must be known before the first connection is accepted, or no proxied request could be
    // authenticated; kube-apiserver may still be publishing it, so wait for it.
    let configmap = loop {
        match backend::request_header_config(&client).await {
            Ok(cm) => break cm,
            Err(error) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "Waiting for the authentication ConfigMap");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let request_header = authn::RequestHeaderConfig::from_configmap(&configmap)?;
    let acceptor = Arc::new(tls::Acceptor::new(
        &config.tls_cert_file,
        &config.tls_private_key_file,
        request_header,
    )?);

    let cache = Arc::new(state::Cache::with_options(config.access_mode, config.local_spaces));
    // Before the reflectors: the first list already shows each space's domain.
    cache.apply(state::Update::Domains {
        cluster: None,
        domains: config.space_domains.clone(),
    });
    let registry_metrics = prometheus::Registry::new();
    metrics::register_local_spaces(&registry_metrics, config.local_spaces);
    tokio::spawn(backend::run(
        client.clone(),
        cache.clone(),
        metrics::BackendMetrics::register(&registry_metrics),
    ));
    {
        let acceptor = acceptor.clone();
        tokio::spawn(backend::watch_request_header_config(client.clone(), move |settings| {
            if acceptor.current().request_header.as_ref() == &settings {
                return;
            }
            match acceptor.update(settings) {
                Ok(()) => {
                    tracing::info!(
                        "Request-header settings changed; the next request on every connection is judged by them"
                    )
                }
                Err(error) => tracing::warn!(%error, "Keeping the old TLS settings"),
            }
        }));
    }

    let authorizer = Arc::new(authz::Authorizer::new(call.clone()));
    let reviewer = (config.access_mode == access::AccessMode::Sar).then(|| {
        let reviewer = backend::review::Reviewer::new(
            authorizer.clone(),
            cache.clone(),
            config.access_review_refresh,
            metrics::ReviewMetrics::register(&registry_metrics),
        );
        tokio::spawn(reviewer.clone().run());
        reviewer
    });
    tracing::info!(mode = ?config.access_mode, local_spaces = config.local_spaces, "Visibility");
    let members = Arc::new(
        clusters::Members::new(call.clone(), client.clone(), authorizer.clone()).with_local_spaces(config.local_spaces),
    );
    members.management().set_domains(config.space_domains.clone());
    tracing::info!(domains = ?config.space_domains, "Space domains");
    let sleeper = Arc::new(spaces::sleep::Sleeper::new(spaces::sleep::SleepMetrics::register(
        &registry_metrics,
    )));
    let app = Arc::new(http::App {
        reviewer,
        registry: spaces::Registry::new(cache.clone()),
        writer: spaces::write::Writer::new(cache, members.clone()).with_sleeper(sleeper.clone()),
        members: members.clone(),
        authorizer,
        tokens: authn::token::TokenAuthenticator::new(call.clone()),
        metrics: metrics::RequestMetrics::register(&registry_metrics),
        registry_metrics,
        shutdown: http::Shutdown::default(),
    });
    tokio::spawn(controllers::reconcile::run(
        app.registry.cache().clone(),
        app.writer.provisioner(),
    ));
    tokio::spawn(controllers::clusters::run(controllers::clusters::Context {
        client: call,
        watch: client.clone(),
        cache: app.registry.cache().clone(),
        members,
        metrics: metrics::ClusterMetrics::register(&app.registry_metrics),
        guards: Arc::default(),
    }));
    tokio::spawn(controllers::sleep::run(
        app.registry.cache().clone(),
        app.writer.provisioner(),
        sleeper,
    ));
    tokio::spawn(controllers::quota::run(
        app.registry.cache().clone(),
        app.writer.provisioner(),
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(addr = %config.listen, "Serving");
    tokio::spawn(acceptor.clone().watch_files());
    let mut server = tokio::spawn(http::serve(listener, acceptor, app.clone(), config.connections));
    tokio::select! {
        result = &mut server => return result.map_err(|e| Error::Serve(std::io::Error::other(e)))?.map_err(Error::Serve),
        () = shutdown_signal() => {}
    }
    shutdown(&app.shutdown, server, &config).await;
    Ok(())
}

/// Graceful shutdown, all within `--shutdown-grace-period` of the signal: readiness fails at once; after
/// `--shutdown-delay` (endpoints stop sending new connections) the listener closes and open watches end cleanly, so
/// their clients resume elsewhere; requests in flight finish. Whatever is still open when the period is over is cut.
async fn shutdown(
    shutdown: &http::Shutdown,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    config: &config::Config,
) {
    let deadline = tokio::time::Instant::now() + config.shutdown_grace_period;
    tracing::info!(
        delay = ?config.shutdown_delay,
        grace_period = ?config.shutdown_grace_period,
        "Shutting down: not ready; the listener closes after the delay"
    );
    shutdown.drain();
    tokio::time::sleep(config.shutdown_delay).await;
    shutdown.close();
    match tokio::time::timeout_at(deadline, server).await {
        Ok(_) => tracing::info!("Shut down: every connection finished"),
        Err(_) => tracing::warn!("Grace period over: exiting with connections still open"),
    }
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler can be installed at startup");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
