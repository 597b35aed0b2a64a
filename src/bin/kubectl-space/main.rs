//! `kubectl space`: the tenant's kubectl plugin for `tenancy.loft.sh/v1` — list, create, use and delete spaces, list
//! accounts, open the web console — with the tenant's own kubeconfig, through kube-apiserver like any other client.
//!
//! A space gets the SpaceTemplates of its Account (`spec.space.templates`), so `create --template T` picks the account:
//! the caller's one Account whose templates include T, as the accounts view shows them.
//!
//! Installed as `kubectl-space` on PATH, kubectl runs it for `kubectl space ...`. Tables are the server's own
//! (`as=Table`), so the columns are those of `kubectl get spaces` / `kubectl get accounts`; errors are the server's
//! Status message, as kubectl prints them, with a non-zero exit.

mod console;
mod expose;
mod kubeconfig;
mod sleep;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use http::{header, Method, Request};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;
use table::print_table;
#[cfg(test)]
use table::{render, Table};
use tenancy_apiserver::api::space::{SpaceSpec, KIND};
use tenancy_apiserver::api::{Space, GROUP, GROUP_VERSION};

/// Ask for the server's Table (the columns `kubectl get` prints), plain JSON if it had none.
const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
const SPACES: &str = "/apis/tenancy.loft.sh/v1/spaces";
const ACCOUNTS: &str = "/apis/tenancy.loft.sh/v1/accounts";

const TOP_HELP: &str = "\
{about-with-newline}
{before-help}

Available Commands:
{subcommands}

Options:
{options}

Usage:
  {usage}

Use \"kubectl space <command> --help\" for more information about a given command.
";

const COMMAND_HELP: &str = "\
{about-with-newline}
{before-help}

Options:
{options}

Usage:
  {usage}
";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl space",
    bin_name = "kubectl space",
    about = "Manage your spaces: the namespaces of a shared cluster that you may use.\n\n \
Spaces (tenancy.loft.sh/v1) are served through kube-apiserver with your own kubeconfig; you see only the spaces\n \
your access allows, and the accounts you belong to.",
    before_help = "Examples:
  # List your spaces
  kubectl space list

  # Create a space in account team-a, then work in it
  kubectl space create team-a-dev --account team-a
  kubectl space use team-a-dev

  # Create a space from template web, with a value for its parameter tier
  kubectl space create team-a-web --template web --param tier=gold

  # List the accounts you belong to
  kubectl space accounts

  # Delete a space
  kubectl space delete team-a-dev

  # Send a space to sleep now, and wake it
  kubectl space sleep team-a-dev
  kubectl space wake team-a-dev

  # Publish service web of the current space at https://web.<space domain>
  kubectl space expose web

  # Open the web console in a browser
  kubectl space console",
    override_usage = "kubectl space [command] [options]",
    help_template = TOP_HELP,
    subcommand_help_heading = "Available Commands",
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the spaces you can see
    #[command(
        visible_alias = "ls",
        help_template = COMMAND_HELP,
        override_usage = "kubectl space list [-o wide|name] [options]",
        before_help = "Examples:
  # List your spaces, with the server's columns (NAME, ACCOUNT, CLUSTER, PHASE, AGE)
  kubectl space list

  # With every column (CREATOR, SHARED)
  kubectl space list -o wide"
    )]
    List {
        /// Output format: wide (every column) or name (space.tenancy.loft.sh/NAME).
        #[arg(short, long, value_enum, value_name = "FORMAT")]
        output: Option<Output>,
    },
    /// Create a space
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space create NAME [--account ACCOUNT] [--template TEMPLATE] [--param KEY=VALUE]... \
[options]",
        before_help = " A space gets the SpaceTemplates of its account. --template picks the account: the one of your accounts
 whose templates include TEMPLATE (kubectl get accounts -o yaml shows them, in spec.space.templates); with --account
 too, that account must apply it.

Examples:
  # Create a space in your only account
  kubectl space create team-a-dev

  # Create a space in a given account
  kubectl space create team-a-dev --account team-a

  # Create a space in the one of your accounts that applies template web
  kubectl space create team-a-web --template web

  # Give values to the parameters its templates declare (spec.templateParameters)
  kubectl space create team-a-web --template web --param tier=gold --param owner=alice

  # Check that it could be created, without creating it
  kubectl space create team-a-dev --dry-run"
    )]
    Create {
        /// Name of the new space (a DNS-1123 label; also its namespace's name).
        name: String,
        /// The Account that owns the space (default: your only account, or the one that applies --template).
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
        /// Create the space in the one of your accounts whose SpaceTemplates include TEMPLATE.
        #[arg(long, value_name = "TEMPLATE")]
        template: Option<String>,
        /// A value for a parameter the space's templates declare (spec.templateParameters); repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Validate on the server without creating anything (dryRun=All).
        #[arg(long)]
        dry_run: bool,
    },
    /// Make a space the namespace of the current context
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space use NAME [options]",
        before_help = "Examples:
  # Work in team-a-dev from now on (kubectl commands without -n use it)
  kubectl space use team-a-dev

  # Set it on another context of the kubeconfig
  kubectl space use team-a-dev --context staging"
    )]
    Use {
        /// The space to use; it must exist and be visible to you.
        name: String,
    },
    /// Delete a space and everything in it
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space delete NAME [--wait=false] [options]",
        before_help = "Examples:
  # Delete a space and wait until it is gone
  kubectl space delete team-a-dev

  # Return as soon as the deletion has started
  kubectl space delete team-a-dev --wait=false"
    )]
    Delete {
        /// The space to delete.
        name: String,
        /// Wait until the space is gone.
        #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true",
              require_equals = true, action = clap::ArgAction::Set)]
        wait: bool,
        /// How long to wait for the space to go.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Publish a service of the current space over HTTPS at a host under the space's domain
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space expose SERVICE [--port PORT] [--host SUB] [-n SPACE] [options]",
        before_help = " Makes the Ingress SUB.<the space's domain> (kubectl get space NAME -o wide shows the domain) with a
 certificate from the platform's shared ClusterIssuer, and prints its URL.

Examples:
  # Publish service web of the current space at https://web.<space domain>
  kubectl space expose web

  # Its port 8080, at https://shop.<space domain>, in space team-a-dev
  kubectl space expose web --port 8080 --host shop -n team-a-dev"
    )]
    Expose {
        /// The Service to publish.
        service: String,
        /// Its port to route to, by number or name (default: its first).
        #[arg(long, value_name = "PORT")]
        port: Option<String>,
        /// The host below the space's domain (default: the service's name).
        #[arg(long, value_name = "SUB")]
        host: Option<String>,
        /// The space (default: the namespace of the current context).
        #[arg(short, long, value_name = "SPACE")]
        namespace: Option<String>,
    },
    /// Send a space to sleep now: its Deployments and StatefulSets scaled to 0, its CronJobs suspended
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space sleep NAME [options]",
        before_help = " Any change in the space by you or anyone else (kubectl apply, kubectl scale, a new Deployment) wakes it,
 and what you changed wins over what it had before.

Examples:
  # Send space team-a-dev to sleep
  kubectl space sleep team-a-dev"
    )]
    Sleep {
        /// The space.
        name: String,
    },
    /// Wake a sleeping space: every Deployment, StatefulSet and CronJob as it was
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space wake NAME [options]",
        before_help = "Examples:
  # Wake space team-a-dev
  kubectl space wake team-a-dev"
    )]
    Wake {
        /// The space.
        name: String,
    },
    /// List the accounts you belong to
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space accounts [options]",
        before_help = "Examples:
  # Your accounts, with their space count and limit
  kubectl space accounts"
    )]
    Accounts,
    /// Open the web console in a browser, through kubectl proxy
    #[command(
        help_template = COMMAND_HELP,
        override_usage = "kubectl space console [--port PORT] [--no-browser] [options]",
        before_help = "Examples:
  # Serve the console on a free local port and open it in a browser; Ctrl-C stops it
  kubectl space console

  # On a given port, printing the URL only
  kubectl space console --port 8001 --no-browser"
    )]
    Console {
        /// Local port for kubectl proxy (0: a free one).
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        port: u16,
        /// Print the URL only; do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Wide,
    Name,
}

/// What makes a command fail; printed to stderr, and the exit code is 1.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// kube-apiserver's (or the server's) Status, in kubectl's words.
    #[error("Error from server{}: {message}", if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    Server { reason: String, message: String },
    #[error("error: {0}")]
    Client(#[source] kube::Error),
    #[error("error: loading the kubeconfig: {0}")]
    Config(String),
    #[error("error: {0}")]
    Kubeconfig(#[from] kubeconfig::Error),
    #[error("error: unexpected answer from the server: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("error: {0}")]
    Usage(String),
    #[error("error: {0}")]
    Console(#[from] console::Error),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => Error::Server {
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => Error::Client(other),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    // The console needs no client here: kubectl proxy reads the kubeconfig itself.
    if let Command::Console { port, no_browser } = &cli.command {
        return Ok(console::run(cli.kubeconfig.as_deref(), cli.context.as_deref(), *port, !no_browser).await?);
    }
    let config = config(&cli).await?;
    let context_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(Error::Client)?;
    match cli.command {
        Command::List { output } => print_table(&client, SPACES, output, "spaces").await,
        Command::Accounts => print_table(&client, ACCOUNTS, None, "accounts").await,
        Command::Create {
            name,
            account,
            template,
            params,
            dry_run,
        } => {
            let account = match template {
                Some(template) => Some(account_of_template(&client, &template, account.as_deref()).await?),
                None => account,
            };
            let name = placed(&client, name, account.as_deref()).await?;
            create(&client, name, account, parameters(params)?, dry_run).await
        }
        Command::Use { name } => {
            // The space must be there (and visible) before the kubeconfig changes.
            client.request::<Space>(get(&format!("{SPACES}/{name}"))).await?;
            let files = kubeconfig::files(cli.kubeconfig.as_deref())?;
            let (context, _) = kubeconfig::set_namespace(&files, cli.context.as_deref(), &name)?;
            println!("Now using space \"{name}\" in context \"{context}\".");
            Ok(())
        }
        Command::Delete { name, wait, timeout } => delete(&client, &name, wait, Duration::from_secs(timeout)).await,
        Command::Expose {
            service,
            port,
            host,
            namespace,
        } => {
            let namespace = namespace.unwrap_or(context_namespace);
            let exposed = expose::expose(&client, &namespace, &service, port.as_deref(), host.as_deref()).await?;
            println!("ingress.networking.k8s.io/{} exposed: {}", exposed.ingress, exposed.url);
            if let Some(issuer) = exposed.issuer {
                println!("Its certificate comes from ClusterIssuer {issuer}: kubectl get certificate -n {namespace}");
            }
            Ok(())
        }
        Command::Sleep { name } => sleep::sleep_or_wake(&client, &name, true).await,
        Command::Wake { name } => sleep::sleep_or_wake(&client, &name, false).await,
        // Served above, before a client is made.
        Command::Console { .. } => Ok(()),
    }
}

/// The kubeconfig kubectl would use, with `--kubeconfig` and `--context` applied.
async fn config(cli: &Cli) -> Result<Config, Error> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Config(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        // $KUBECONFIG, ~/.kube/config, then a pod's own service account.
        None => Config::infer().await.map_err(|e| Error::Config(e.to_string()))?,
    };
    Ok(config)
}

fn get(path: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::ACCEPT, "application/json")
        .body(Vec::new())
        .expect("a GET request from a path")
}

/// `KEY=VALUE` of `--param`, split at the first `=`.
fn parse_param(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{arg:?} is not KEY=VALUE")),
    }
}

/// The `--param` values as `spec.templateParameters`; a key given twice is refused rather than one value dropped.
fn parameters(params: Vec<(String, String)>) -> Result<BTreeMap<String, String>, Error> {
    let mut map = BTreeMap::new();
    for (key, value) in params {
        if map.insert(key.clone(), value).is_some() {
            return Err(Error::Usage(format!("--param {key} is given more than once")));
        }
    }
    Ok(map)
}

/// The parts of the accounts view (`kubectl get accounts -o json`) that say which templates each account applies.
#[derive(Debug, Deserialize)]
struct AccountList {
    #[serde(default)]
    items: Vec<AccountItem>,
}

#[derive(Debug, Deserialize)]
struct AccountItem {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: AccountItemSpec,
}

#[derive(Debug, Default, Deserialize)]
struct AccountItemSpec {
    #[serde(default)]
    space: AccountItemSpace,
}

#[derive(Debug, Default, Deserialize)]
struct AccountItemSpace {
    /// The templates its new spaces get (the default one when the Account names none).
    #[serde(default)]
    templates: Vec<String>,
    /// The connected clusters it may create spaces in.
    #[serde(default)]
    clusters: Vec<String>,
    /// Whether it may create spaces in the management cluster (`false` on a trunk-only install); unset: it may.
    #[serde(default)]
    local: Option<bool>,
}

/// Where a space named `name` goes: as named when the name says its cluster (`<cluster>.<namespace>`) or the account
/// (`account`, else the caller's only one) may create in the management cluster; on a trunk-only install, in the
/// account's first connected cluster, said on stderr. Anything unclear is left to the server to answer.
async fn placed(client: &Client, name: String, account: Option<&str>) -> Result<String, Error> {
    if name.contains('.') {
        return Ok(name);
    }
    let list: AccountList = client.request(get(ACCOUNTS)).await?;
    let chosen = match account {
        Some(wanted) => list.items.iter().find(|a| a.metadata.name.as_deref() == Some(wanted)),
        None if list.items.len() == 1 => list.items.first(),
        None => None,
    };
    let Some(space) = chosen.map(|a| &a.spec.space).filter(|s| s.local == Some(false)) else {
        return Ok(name);
    };
    Ok(match space.clusters.first() {
        Some(cluster) => {
            eprintln!("this server keeps no spaces in its own cluster: creating {name} in cluster {cluster}");
            format!("{cluster}.{name}")
        }
        None => name,
    })
}

/// The account a space made from `template` belongs in: of the caller's accounts, the one whose templates include it
/// (`account`, if given, must be that one). Refused before anything is made when none or several do.
async fn account_of_template(client: &Client, template: &str, account: Option<&str>) -> Result<String, Error> {
    let list: AccountList = client.request(get(ACCOUNTS)).await?;
    let accounts: Vec<(String, Vec<String>)> = list
        .items
        .into_iter()
        .map(|a| (a.metadata.name.unwrap_or_default(), a.spec.space.templates))
        .collect();
    choose_account(&accounts, template, account)
}

/// [`account_of_template`]'s choice among `accounts` (name, templates).
fn choose_account(accounts: &[(String, Vec<String>)], template: &str, account: Option<&str>) -> Result<String, Error> {
    let templates_of = |templates: &[String]| {
        if templates.is_empty() {
            "none".to_owned()
        } else {
            templates.join(", ")
        }
    };
    if let Some(wanted) = account {
        let Some((_, templates)) = accounts.iter().find(|(name, _)| name == wanted) else {
            return Err(Error::Usage(format!(
                "account {wanted:?} is not one of your accounts (see 'kubectl space accounts')"
            )));
        };
        if !templates.iter().any(|t| t == template) {
            return Err(Error::Usage(format!(
                "account {wanted:?} does not apply template {template:?}; its templates: {}",
                templates_of(templates)
            )));
        }
        return Ok(wanted.to_owned());
    }
    let matching: Vec<&str> = accounts
        .iter()
        .filter(|(_, templates)| templates.iter().any(|t| t == template))
        .map(|(name, _)| name.as_str())
        .collect();
    match matching[..] {
        [one] => Ok(one.to_owned()),
        [] if accounts.is_empty() => Err(Error::Usage(format!(
            "no account of yours applies template {template:?}: you belong to no account"
        ))),
        [] => Err(Error::Usage(format!(
            "no account of yours applies template {template:?}; your accounts' templates: {}",
            accounts
                .iter()
                .map(|(name, templates)| format!("{name} ({})", templates_of(templates)))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Err(Error::Usage(format!(
            "template {template:?} is applied by several of your accounts: {}; choose one with --account",
            matching.join(", ")
        ))),
    }
}

async fn create(
    client: &Client,
    name: String,
    account: Option<String>,
    template_parameters: BTreeMap<String, String>,
    dry_run: bool,
) -> Result<(), Error> {
    let space = Space {
        api_version: GROUP_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: SpaceSpec {
            account,
            template_parameters,
            ..SpaceSpec::default()
        },
        status: Default::default(),
    };
    let query = if dry_run {
        "?fieldManager=kubectl-space&dryRun=All"
    } else {
        "?fieldManager=kubectl-space"
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{SPACES}{query}"))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&space)?)
        .expect("a POST request from a path");
    let created: Space = client.request(request).await?;
    let suffix = if dry_run { " (server dry run)" } else { "" };
    println!("space.{GROUP}/{} created{suffix}", created.name());
    Ok(())
}

async fn delete(client: &Client, name: &str, wait: bool, timeout: Duration) -> Result<(), Error> {
    let path = format!("{SPACES}/{name}");
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(&path)
        .header(header::ACCEPT, "application/json")
        .body(Vec::new())
        .expect("a DELETE request from a path");
    client.request_text(request).await?;
    println!("space.{GROUP} \"{name}\" deleted");
    if !wait {
        return Ok(());
    }
    // Gone means NotFound: the namespace has been removed, or the caller's access to it went first.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match client.request_text(get(&path)).await {
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Usage(format!(
                    "timed out after {}s waiting for space {name:?} to be deleted",
                    timeout.as_secs()
                )))
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests;
