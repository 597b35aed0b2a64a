//! `kubectl space sleep` and `kubectl space wake`: a space sent to sleep now, or woken now, by someone who may update
//! it (as any write, a space the caller cannot see is not found).

use k8s_openapi::jiff::Timestamp;

use super::{Error, WriteOptions, Writer};
use crate::api::Space;
use crate::authn::User;
use crate::sleep::BY_REQUEST;
use crate::spaces::sleep::{asleep, awake, status_of, WakeCause};

/// Tries of a request whose namespace changed between its read and its write.
const TRIES: usize = 5;

impl Writer {
    /// Sends space `name` to sleep (`sleep`) or wakes it; the space as it then is. Already so: nothing changes.
    ///
    /// # Errors
    /// Not visible, not allowed, or the cluster refused.
    pub async fn sleep_or_wake(&self, user: &User, name: &str, sleep: bool) -> Result<Space, Error> {
        self.visible(user, name)?;
        let place = self.place(name)?;
        place.authorize(user, "update", name).await?;
        for _ in 0..TRIES {
            let ns = place
                .namespaces()
                .get(&place.namespace)
                .await
                .map_err(|e| Error::from_kube(e, name))?;
            let status = status_of(&ns);
            if status.sleeping == sleep {
                return Ok(place.show(&ns));
            }
            let (wanted, cause) = if sleep {
                (asleep(&status, BY_REQUEST), None)
            } else {
                (awake(Timestamp::now(), &user.name), Some(WakeCause::Request))
            };
            let written = self
                .sleeper
                .change(place.member.client(), &ns, &wanted, cause)
                .await
                .map_err(|e| Error::from_kube(e, name))?;
            if let Some(written) = written {
                let shown = place.show(&written);
                self.wait_seen(name, Some(&shown), &WriteOptions::default()).await;
                return Ok(shown);
            }
        }
        Err(Error::Conflict(name.to_owned()))
    }
}
