//! Leases in the management cluster's [`LEASE_NAMESPACE`]: work under one (an account's creates, a quota's pass) runs
//! on one replica at a time; a holder that crashed loses its Lease once it is [`LEASE_SECONDS`] old.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};

use super::{Provisioner, LEASE_NAMESPACE};
use crate::spaces::Error;

/// How long a lease holder may take before others may break its lease (a crashed replica).
const LEASE_SECONDS: i32 = 15;
/// How long a create waits for its account's lease.
const LEASE_WAIT: Duration = Duration::from_secs(20);

impl Provisioner {
    /// Runs `work` holding the Lease `name` in [`LEASE_NAMESPACE`], so that no other replica runs work under the same
    /// Lease meanwhile (it is broken only once [`LEASE_SECONDS`] old: a crashed holder).
    ///
    /// # Errors
    /// The Lease cannot be had, or `work` fails.
    pub async fn holding<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let lease = self.acquire(name).await?;
        let result = work.await;
        self.release(lease).await;
        result
    }

    async fn acquire(&self, name: &str) -> Result<Lease, Error> {
        let leases: Api<Lease> = Api::namespaced(self.management().clone(), LEASE_NAMESPACE);
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        // 10 ms, doubling to 200 ms, until the deadline: creates of one account are short, so the lease comes soon.
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(200))
            .without_max_times()
            .build();
        loop {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(LEASE_NAMESPACE.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(MicroTime(Timestamp::now())),
                    ..LeaseSpec::default()
                }),
            };
            match leases.create(&PostParams::default(), &lease).await {
                Ok(lease) => return Ok(lease),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    self.break_if_expired(&leases, name).await;
                }
                Err(error) => return Err(Error::Backend(error)),
            }
            match pauses.next() {
                Some(pause) if tokio::time::Instant::now() < deadline => tokio::time::sleep(pause).await,
                _ => return Err(Error::Busy(name.to_owned())),
            }
        }
    }

    /// Deletes a lease whose holder is past its duration (it crashed), guarded by its resourceVersion.
    async fn break_if_expired(&self, leases: &Api<Lease>, name: &str) {
        let Ok(lease) = leases.get(name).await else { return };
        let spec = lease.spec.clone().unwrap_or_default();
        let since = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
        let expired = since.is_none_or(|t| Timestamp::now().as_second() - t.as_second() > duration);
        if expired {
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    resource_version: lease.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            tracing::warn!(lease = %name, holder = ?spec.holder_identity, "Breaking an expired lease");
            let _ = leases.delete(name, &params).await;
        }
    }

    async fn release(&self, lease: Lease) {
        let leases: Api<Lease> = Api::namespaced(self.management().clone(), LEASE_NAMESPACE);
        let name = lease.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: lease.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(error) = leases.delete(&name, &params).await {
            tracing::warn!(lease = %name, %error, "Releasing a lease failed; it expires by itself");
        }
    }
}
