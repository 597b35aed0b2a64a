//! `kubectl space sleep NAME` and `kubectl space wake NAME`: the space's `sleep` and `wake` subresources, as whoever may
//! update the space.

use http::{header, Method, Request};
use kube::Client;
use tenancy_apiserver::api::Space;

use super::{Error, SPACES};

/// Sends space `name` to sleep (`sleep`) or wakes it, and says how it then is.
pub(super) async fn sleep_or_wake(client: &Client, name: &str, sleep: bool) -> Result<(), Error> {
    let action = if sleep { "sleep" } else { "wake" };
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{SPACES}/{name}/{action}"))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .body(b"{}".to_vec())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let space: Space = client.request(request).await?;
    let sleeping = space.status.sleep.as_ref().is_some_and(|s| s.sleeping);
    let said = match (sleep, sleeping) {
        (true, true) => format!("space.tenancy.loft.sh/{name} is asleep"),
        (false, false) => format!("space.tenancy.loft.sh/{name} is awake"),
        (true, false) => format!("space.tenancy.loft.sh/{name} woke again at once: something changed in it"),
        (false, true) => format!("space.tenancy.loft.sh/{name} is still asleep"),
    };
    println!("{said}");
    Ok(())
}
