// Package clientgo is tenancy-apiserver's client-go compatibility suite: discovery and RESTMapper, the dynamic,
// typed-like REST and metadata clients, and informers (with and without WatchList), all through kube-apiserver as
// impersonated tenants.
//
// The tests run against the environment that tests/env/up.sh starts, named by TENANCY_E2E_ENV:
//
//	bash tests/env/up.sh /tmp/cg-env
//	cd tests/clientgo && TENANCY_E2E_ENV=/tmp/cg-env/env GOTOOLCHAIN=local go test -count=1 ./...
//	bash tests/controlplane/down.sh /tmp/cg-env
//
// tests/run.sh runs them after the Rust suite, against the same environment.
package clientgo
