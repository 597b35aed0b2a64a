package main

// The environment named by TENANCY_E2E_ENV, read the way the client-go suite reads it (harness_test.go), and the
// impersonated HTTP clients every request of the soak goes through: kube-apiserver's aggregator, never the server's
// own port.

import (
	"fmt"
	"net/http"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

type env struct {
	vars  map[string]string
	admin *rest.Config
	kube  kubernetes.Interface
}

func loadEnv() (*env, error) {
	// The soak's own pacing (bounded workers) is the only limit: no client-side rate limiter.
	loaded, err := e2eenv.Load("e.g. `bash tests/env/up.sh /tmp/soak-env` then TENANCY_E2E_ENV=/tmp/soak-env/env go run ./cmd/soak",
		e2eenv.Client{QPS: -1, Burst: 0, UserAgent: "tenancy-soak"}, "PID_DIR")
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(loaded.Vars["APISERVER_URL"], "https://127.0.0.1:") {
		return nil, fmt.Errorf("APISERVER_URL=%s is not on loopback; the soak only runs against a local control plane",
			loaded.Vars["APISERVER_URL"])
	}
	return &env{vars: loaded.Vars, admin: loaded.Admin, kube: loaded.Kube}, nil
}

// httpClient is an HTTP client acting as user with groups through the admin's impersonation (the aggregator
// forwards them as X-Remote-User / X-Remote-Group), every response counted by counter. All clients share client-go's
// cached TLS transport, so connections to kube-apiserver are pooled as one client's would be.
func (e *env) httpClient(user string, groups []string, counter *statusCounter) (*http.Client, error) {
	cfg := rest.CopyConfig(e.admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	cfg.WrapTransport = transport.Wrappers(cfg.WrapTransport, func(next http.RoundTripper) http.RoundTripper {
		return e2eenv.RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			if resp != nil {
				counter.add(resp.StatusCode)
			}
			return resp, err
		})
	})
	return rest.HTTPClientFor(cfg)
}
