package main

// The environment named by TENANCY_E2E_ENV, read the way the client-go suite reads it (harness_test.go), and the
// impersonated HTTP clients every request of the soak goes through: kube-apiserver's aggregator, never the server's
// own port.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"
)

type env struct {
	vars  map[string]string
	admin *rest.Config
	kube  kubernetes.Interface
}

func loadEnv() (*env, error) {
	file := os.Getenv("TENANCY_E2E_ENV")
	if file == "" {
		return nil, fmt.Errorf("TENANCY_E2E_ENV is not set; it must name the env file written by tests/env/up.sh " +
			"(e.g. `bash tests/env/up.sh /tmp/soak-env` then TENANCY_E2E_ENV=/tmp/soak-env/env go run ./cmd/soak)")
	}
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("TENANCY_E2E_ENV=%s: %w", file, err)
	}
	// The file is bash `export NAME=value` lines with %q quoting: let bash itself expand them.
	cmd := exec.Command("bash", "-c", `set -a; source "$1" >/dev/null; env -0`, "bash", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("sourcing %s: %v: %s", file, err, stderr.String())
	}
	vars := map[string]string{}
	for entry := range bytes.SplitSeq(out, []byte{0}) {
		if k, v, ok := strings.Cut(string(entry), "="); ok {
			vars[k] = v
		}
	}
	for _, name := range []string{"APISERVER_URL", "KUBECONFIG_ADMIN", "PID_DIR"} {
		if vars[name] == "" {
			return nil, fmt.Errorf("%s is missing from %s", name, file)
		}
	}
	if !strings.HasPrefix(vars["APISERVER_URL"], "https://127.0.0.1:") {
		return nil, fmt.Errorf("APISERVER_URL=%s is not on loopback; the soak only runs against a local control plane",
			vars["APISERVER_URL"])
	}
	admin, err := clientcmd.BuildConfigFromFlags(vars["APISERVER_URL"], vars["KUBECONFIG_ADMIN"])
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", vars["KUBECONFIG_ADMIN"], err)
	}
	// The soak's own pacing (bounded workers) is the only limit: no client-side rate limiter.
	admin.QPS, admin.Burst = -1, 0
	admin.UserAgent = "tenancy-soak"
	kube, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	return &env{vars: vars, admin: admin, kube: kube}, nil
}

// httpClient is an HTTP client acting as user with groups through the admin's impersonation (the aggregator
// forwards them as X-Remote-User / X-Remote-Group), every response counted by counter. All clients share client-go's
// cached TLS transport, so connections to kube-apiserver are pooled as one client's would be.
func (e *env) httpClient(user string, groups []string, counter *statusCounter) (*http.Client, error) {
	cfg := rest.CopyConfig(e.admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	cfg.WrapTransport = transport.Wrappers(cfg.WrapTransport, func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			if resp != nil {
				counter.add(resp.StatusCode)
			}
			return resp, err
		})
	})
	return rest.HTTPClientFor(cfg)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
