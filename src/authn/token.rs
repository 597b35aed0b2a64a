//! Bearer tokens, for callers that reach the server directly (Prometheus, probes with a ServiceAccount): a
//! TokenReview against kube-apiserver, with successes and failures cached for a bounded time as kube's delegated
//! authenticator does (keyed by the token's SHA-256, never the token itself; one review for concurrent requests with
//! the same token).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use kube::Client;

use super::{Error, User};

/// How long an answer is reused (`--authentication-token-webhook-cache-ttl`'s default).
const TTL: Duration = Duration::from_secs(10);
const MAX_ENTRIES: u64 = 10_000;

type Digest = [u8; 32];

pub struct TokenAuthenticator {
    client: Client,
    /// A rejected token is remembered as `None`, as kube does.
    cache: moka::future::Cache<Digest, Option<User>>,
}

// === impl TokenAuthenticator ===

impl TokenAuthenticator {
    #[must_use]
    pub fn new(client: Client) -> Self {
        TokenAuthenticator {
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// The user a token belongs to.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for tokens kube-apiserver does not accept, or when it cannot be asked.
    pub async fn authenticate(&self, token: &str) -> Result<User, Error> {
        let mut key = [0_u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        let answer = self
            .cache
            .try_get_with(key, self.review(token))
            .await
            .map_err(|_| Error::Unauthenticated)?;
        answer.ok_or(Error::Unauthenticated)
    }

    /// Asks kube-apiserver who `token` belongs to: `None` for a token it rejects.
    async fn review(&self, token: &str) -> Result<Option<User>, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        match Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(review) => Ok(review
                .status
                .filter(|s| s.authenticated == Some(true))
                .and_then(|s| s.user)
                .map(|info| {
                    let mut groups = info.groups.unwrap_or_default();
                    if !groups.iter().any(|g| g == "system:authenticated") {
                        groups.push("system:authenticated".to_owned());
                    }
                    User {
                        name: info.username.unwrap_or_default(),
                        uid: info.uid,
                        groups,
                        extra: info.extra.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
                    }
                })
                .filter(|user| !user.name.is_empty())),
            Err(error) => {
                // Not cached: an unreachable kube-apiserver must not lock a good token out for the TTL.
                tracing::warn!(%error, "TokenReview failed");
                Err(Error::Unauthenticated)
            }
        }
    }
}
