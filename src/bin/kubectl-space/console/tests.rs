//! `kubectl space console`'s parts that need no cluster: its arguments, the proxy's, and the URL it prints.

use std::path::Path;

use clap::Parser;

use super::*;
use crate::{Cli, Command};

#[test]
fn the_url_is_the_console_folder_on_the_address_kubectl_proxy_says_it_serves_on() {
    assert_eq!(
        url_from("Starting to serve on 127.0.0.1:40123").as_deref(),
        Some("http://127.0.0.1:40123/apis/tenancy.loft.sh/v1/console/")
    );
    assert_eq!(
        url_from("Starting to serve on [::1]:8001\n").as_deref(),
        Some("http://[::1]:8001/apis/tenancy.loft.sh/v1/console/")
    );
    assert_eq!(url_from("W0101 some warning"), None);
    assert_eq!(url_from("Starting to serve on "), None);
}

#[test]
fn the_proxy_uses_the_plugins_kubeconfig_and_context_on_the_loopback_address() {
    assert_eq!(proxy_args(None, None, 0), ["proxy", "--port=0", "--address=127.0.0.1"]);
    assert_eq!(
        proxy_args(Some(Path::new("kc/alice.kubeconfig")), Some("staging"), 8001),
        [
            "proxy",
            "--port=8001",
            "--address=127.0.0.1",
            "--kubeconfig=kc/alice.kubeconfig",
            "--context=staging"
        ]
    );
}

#[test]
fn console_takes_a_port_and_may_leave_the_browser_closed() {
    let cli = Cli::try_parse_from(["kubectl-space", "console"]).expect("parses");
    assert!(matches!(
        cli.command,
        Command::Console {
            port: 0,
            no_browser: false
        }
    ));
    let cli = Cli::try_parse_from(["kubectl-space", "console", "--port", "8001", "--no-browser"]).expect("parses");
    assert!(matches!(
        cli.command,
        Command::Console {
            port: 8001,
            no_browser: true
        }
    ));
    assert!(Cli::try_parse_from(["kubectl-space", "console", "--port", "http"]).is_err());
}

#[test]
fn a_browser_is_opened_with_the_systems_own_opener() {
    let expected = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    assert_eq!(opener(), expected);
}
