// Package e2eenv is the environment every client-go program of the suite talks to: the env file that
// tests/env/up.sh writes (named by TENANCY_E2E_ENV), the admin's client to kube-apiserver, and impersonated tenants.
// The test packages (the main suite, restart) and the soak share it.
package e2eenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Env is a loaded environment.
type Env struct {
	// Vars are the env file's variables.
	Vars map[string]string
	// Admin is the admin's client certificate from its kubeconfig, talking to kube-apiserver: every case goes
	// through the aggregator, never straight to the server's port.
	Admin *rest.Config
	Kube  kubernetes.Interface
}

// Client is how a program's admin client is rate-limited and named.
type Client struct {
	QPS       float32
	Burst     int
	UserAgent string
}

// Load reads the env file named by TENANCY_E2E_ENV (howTo tells a person how to make one), checks that it has the
// variables named in required, and builds the admin's client.
func Load(howTo string, client Client, required ...string) (*Env, error) {
	file := os.Getenv("TENANCY_E2E_ENV")
	if file == "" {
		return nil, fmt.Errorf("TENANCY_E2E_ENV is not set; it must name the env file written by tests/env/up.sh (%s)", howTo)
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
	for _, name := range append([]string{"APISERVER_URL", "KUBECONFIG_ADMIN"}, required...) {
		if vars[name] == "" {
			return nil, fmt.Errorf("%s is missing from %s", name, file)
		}
	}
	admin, err := clientcmd.BuildConfigFromFlags(vars["APISERVER_URL"], vars["KUBECONFIG_ADMIN"])
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", vars["KUBECONFIG_ADMIN"], err)
	}
	if len(admin.CertData) == 0 && admin.CertFile == "" {
		return nil, fmt.Errorf("%s has no client certificate", vars["KUBECONFIG_ADMIN"])
	}
	admin.QPS, admin.Burst, admin.UserAgent = client.QPS, client.Burst, client.UserAgent
	kube, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	return &Env{Vars: vars, Admin: admin, Kube: kube}, nil
}

// Tenant is a user of its own with a group of its own, reached through the admin's impersonation: the aggregator
// forwards them as X-Remote-User / X-Remote-Group exactly as for a real login.
type Tenant struct {
	User, Group string
	admin       *rest.Config
}

// NewTenant is user, in group user + "-team", acting through admin.
func NewTenant(user string, admin *rest.Config) *Tenant {
	return &Tenant{User: user, Group: user + "-team", admin: admin}
}

// Config is a fresh rest.Config acting as the tenant.
func (tn *Tenant) Config() *rest.Config {
	cfg := rest.CopyConfig(tn.admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: tn.User, Groups: []string{tn.Group}}
	return cfg
}

// UserSubject names the tenant's user in a RoleBinding.
func (tn *Tenant) UserSubject() rbacv1.Subject {
	return rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: tn.User}
}

// GroupSubject names the tenant's group in a RoleBinding.
func (tn *Tenant) GroupSubject() rbacv1.Subject {
	return rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: tn.Group}
}
