//! `kubectl space sleep` and `kubectl space wake`: a space sent to sleep now, or woken now, by someone who may update
//! it (as any write, a space the caller cannot see is not found).

use k8s_openapi::jiff::Timestamp;

use super::{Error, WriteOptions, Writer};
use crate::api::Space;
use crate::authn::User;
use crate::sleep::BY_REQUEST;
use crate::spaces::sleep::{asleep, awake, status_of, Step, WakeCause};

impl Writer {
    /// Sends space `name` to sleep (`sleep`) or wakes it; the space as it then is. Already so: its workloads are
    /// brought along once more, nothing else changes.
    ///
    /// # Errors
    /// Not visible, not allowed, or the cluster refused.
    pub async fn sleep_or_wake(&self, user: &User, name: &str, sleep: bool) -> Result<Space, Error> {
        self.visible(user, name)?;
        let place = self.place(name)?;
        place.authorize(user, "update", name).await?;
        let written = self
            .sleeper
            .act(&place.provisioner, &place.namespace, |fresh| {
                let status = status_of(fresh);
                match (status.sleeping, sleep) {
                    (true, true) | (false, false) => Step::Converge,
                    (false, true) => Step::Write(asleep(&status, BY_REQUEST), None),
                    (true, false) => Step::Write(awake(Timestamp::now(), &user.name), Some(WakeCause::Request)),
                }
            })
            .await?;
        let shown = place.show(&written);
        self.wait_seen(name, Some(&shown), &WriteOptions::default()).await;
        Ok(shown)
    }
}
