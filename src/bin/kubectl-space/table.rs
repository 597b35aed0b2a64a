//! The server's Tables (`as=Table`) printed as kubectl prints them: the columns of `kubectl get spaces` and `kubectl
//! get accounts`, wide or names only.

use http::{header, Method, Request};
use kube::Client;
use serde::Deserialize;

use super::{Error, Output, ACCEPT_TABLE};
use tenancy_apiserver::api::GROUP;

/// The parts of a `meta.k8s.io/v1` Table this tool prints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Table {
    #[serde(default)]
    column_definitions: Vec<Column>,
    #[serde(default)]
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Column {
    name: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    priority: i32,
}

#[derive(Debug, Deserialize)]
struct Row {
    #[serde(default)]
    cells: Vec<serde_json::Value>,
}

pub(super) async fn print_table(
    client: &Client,
    path: &str,
    output: Option<Output>,
    resource: &str,
) -> Result<(), Error> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("{path}?includeObject=None"))
        .header(header::ACCEPT, ACCEPT_TABLE)
        .body(Vec::new())
        .expect("a GET request from a path");
    let table: Table = client.request(request).await?;
    if table.rows.is_empty() {
        eprintln!("No resources found");
        return Ok(());
    }
    print!("{}", render(&table, output, &format!("{resource}.{GROUP}")));
    Ok(())
}

/// The table as kubectl prints it: upper-case headers, columns padded to their widest cell plus three spaces, priority
/// columns only when wide. `name` prints `resource/NAME` lines (the singular resource name, as kubectl does).
pub(super) fn render(table: &Table, output: Option<Output>, resource: &str) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<none>".to_owned(),
        other => other.to_string(),
    };
    if output == Some(Output::Name) {
        let at = table
            .column_definitions
            .iter()
            .position(|c| c.format == "name")
            .unwrap_or(0);
        let singular = resource
            .replacen("spaces.", "space.", 1)
            .replacen("accounts.", "account.", 1);
        return table
            .rows
            .iter()
            .filter_map(|r| r.cells.get(at))
            .map(|v| format!("{singular}/{}\n", cell(v)))
            .collect();
    }
    let shown: Vec<usize> = (0..table.column_definitions.len())
        .filter(|&i| output == Some(Output::Wide) || table.column_definitions[i].priority == 0)
        .collect();
    let mut lines: Vec<Vec<String>> = vec![shown
        .iter()
        .map(|&i| table.column_definitions[i].name.to_uppercase())
        .collect()];
    lines.extend(table.rows.iter().map(|r| {
        shown
            .iter()
            .map(|&i| r.cells.get(i).map(cell).unwrap_or_default())
            .collect()
    }));
    let widths: Vec<usize> = (0..shown.len())
        .map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (c, value) in line.iter().enumerate() {
            text.push_str(value);
            if c + 1 < line.len() {
                text.push_str(&" ".repeat(widths[c] - value.chars().count() + 3));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}
