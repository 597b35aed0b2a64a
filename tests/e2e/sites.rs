//! Where a tenancy test runs: the management cluster, or the connected cluster the suite shares. Tenants always reach
//! spaces through the management cluster's kube-apiserver; what a site changes is where the space's namespace lives,
//! what it is called there, and whose kube-apiserver a tenant or an admin talks to straight, with plain kubectl. One
//! test body, run at each site, proves a guarantee for both.

use std::sync::RwLockReadGuard;

use crate::clusters::spaces::shared;
use crate::harness::{env, Kubectl};

pub struct Site {
    /// `None`: the management cluster; else the connected cluster's name.
    cluster: Option<String>,
    /// The shared connected cluster, held alongside the other tests that leave it up.
    _turn: Option<RwLockReadGuard<'static, ()>>,
}

// === impl Site ===

impl Site {
    /// The management cluster.
    pub fn management() -> Self {
        Site {
            cluster: None,
            _turn: None,
        }
    }

    /// The connected cluster the suite shares (started and connected on first use).
    pub fn connected() -> Self {
        let shared = shared();
        Site {
            _turn: Some(shared.share()),
            cluster: Some(shared.name.clone()),
        }
    }

    /// Both sites, management first.
    pub fn all() -> [Site; 2] {
        [Site::management(), Site::connected()]
    }

    /// The connected cluster's name; `None` for the management cluster.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// kubectl with a bearer token of this site's cluster, straight at its kube-apiserver (as a pod there would).
    pub fn with_token(&self, token: &str) -> Kubectl {
        match &self.cluster {
            None => env().kubectl_token(token),
            Some(_) => shared().plane.kubectl_token(token),
        }
    }

    /// The base domain of this site's spaces: the run's `--space-domain`, or the connected cluster's own.
    pub fn space_domain(&self) -> String {
        match &self.cluster {
            None => env().var("SPACE_DOMAIN").to_owned(),
            Some(_) => shared().space_domain(),
        }
    }

    /// What a failing check names the site by.
    pub fn name(&self) -> &str {
        self.cluster.as_deref().unwrap_or("the management cluster")
    }

    /// The space of namespace `ns` of this site, as tenants name it through the management cluster.
    pub fn space(&self, ns: &str) -> String {
        match &self.cluster {
            None => ns.to_owned(),
            Some(cluster) => format!("{cluster}.{ns}"),
        }
    }

    /// kubectl as this site's cluster admin, straight at its kube-apiserver.
    pub fn admin(&self) -> Kubectl {
        match &self.cluster {
            None => env().kubectl("admin"),
            Some(_) => shared().plane.admin(),
        }
    }

    /// kubectl as `user` in `groups`, straight at this site's kube-apiserver (its admin impersonating them).
    pub fn tenant(&self, user: &str, groups: &[&str]) -> Kubectl {
        match &self.cluster {
            None => env().kubectl_as(user, groups),
            Some(_) => shared().plane.kubectl_as(user, groups),
        }
    }
}
