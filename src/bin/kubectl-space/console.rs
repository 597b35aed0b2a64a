//! `kubectl space console`: the web console in a browser, with the user's own kubeconfig. It runs `kubectl proxy` on a
//! local port (the user's credentials stay in kubectl; the page reaches kube-apiserver through it, as the same user),
//! prints the console's URL, opens a browser on it, and keeps the proxy up until interrupted.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the server serves the console, below the proxy's root.
pub const CONSOLE_PATH: &str = "/apis/tenancy.loft.sh/v1/console/";
/// What `kubectl proxy` prints once it listens, before the address (`127.0.0.1:8001`).
const SERVING: &str = "Starting to serve on ";

/// Why the console could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running kubectl proxy (is kubectl on PATH?): {0}")]
    Spawn(#[source] std::io::Error),
    /// Its own words about why went to stderr, which it shares with this command.
    #[error("kubectl proxy exited ({0})")]
    Exited(String),
}

/// `kubectl proxy`'s arguments: the same kubeconfig and context as the plugin's, on `port` (0: a free one, which
/// kubectl picks and prints), on the loopback address only.
#[must_use]
pub fn proxy_args(kubeconfig: Option<&Path>, context: Option<&str>, port: u16) -> Vec<String> {
    let mut args = vec![
        "proxy".to_owned(),
        format!("--port={port}"),
        "--address=127.0.0.1".to_owned(),
    ];
    if let Some(kubeconfig) = kubeconfig {
        args.push(format!("--kubeconfig={}", kubeconfig.display()));
    }
    if let Some(context) = context {
        args.push(format!("--context={context}"));
    }
    args
}

/// The console's URL from the line `kubectl proxy` prints once it listens; `None` for any other line.
#[must_use]
pub fn url_from(line: &str) -> Option<String> {
    let address = line.trim().strip_prefix(SERVING)?;
    (!address.is_empty()).then(|| format!("http://{address}{CONSOLE_PATH}"))
}

/// The program that opens a URL in the user's browser on this system.
#[must_use]
pub fn opener() -> &'static str {
    if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    }
}

/// Runs the proxy, prints the URL, opens a browser (unless `open` is false; a browser that cannot be opened is only
/// said), and returns when interrupted (Ctrl-C, SIGTERM: the proxy is stopped too) or when the proxy exits (an error).
///
/// # Errors
/// kubectl cannot be run, or its proxy exits (a bad kubeconfig, a port in use).
pub async fn run(kubeconfig: Option<&Path>, context: Option<&str>, port: u16, open: bool) -> Result<(), Error> {
    let mut proxy = Command::new("kubectl")
        .args(proxy_args(kubeconfig, context, port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Spawn)?;
    let Some(url) = listening(&mut proxy).await else {
        return Err(exited(proxy.wait().await));
    };
    println!("Console: {url}");
    println!("Served through kubectl proxy as your kubeconfig's user. Press Ctrl-C to stop.");
    if open {
        tokio::spawn(open_browser(url));
    }
    let interrupted = async {
        #[cfg(unix)]
        {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    let ended = tokio::select! {
        () = interrupted => None,
        status = proxy.wait() => Some(status),
    };
    match ended {
        Some(status) => Err(exited(status)),
        None => {
            let _ = proxy.kill().await;
            Ok(())
        }
    }
}

/// Waits for the proxy's "Starting to serve on" line; `None` if it ends first. Its later output is passed on.
async fn listening(proxy: &mut Child) -> Option<String> {
    let stdout = proxy.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = url_from(&line) {
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    println!("{line}");
                }
            });
            return Some(url);
        }
        println!("{line}");
    }
    None
}

fn exited(status: std::io::Result<std::process::ExitStatus>) -> Error {
    Error::Exited(match status {
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    })
}

async fn open_browser(url: String) {
    let program = opener();
    let result = Command::new(program)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("Could not open a browser ({program} exited with {status}): open the URL above yourself.")
        }
        Err(error) => eprintln!("Could not open a browser ({program}: {error}): open the URL above yourself."),
    }
}

#[cfg(test)]
mod tests;
