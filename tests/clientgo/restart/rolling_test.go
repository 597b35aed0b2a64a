package restart

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

// A tenant's dynamic informer on spaces, through kube-apiserver, ends with a store equal to the truth after a rolling
// update of the server in the middle of a stream of grants, revocations and namespace deletions: a new process starts
// on another port, kube-apiserver is pointed at it, the old one is killed; twice, so the run's server ends on its
// original port (the next packages use it). The new process never made the informer's resourceVersion, so its
// resumed watch gets 410 and client-go relists; what is asserted is the store, not how it got there.
func TestInformerStaysCorrectAcrossARollingUpdateOfTheServer(t *testing.T) {
	e := testEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tn := e.newTenant("roll")

	// Six spaces to start with; the stream revokes two, deletes two, grants four more.
	var start []string
	bindings := map[string]string{}
	for range 6 {
		ns, binding := e.namespaceWithGrant(t, ctx, "roll", tn.UserSubject())
		start = append(start, ns)
		bindings[ns] = binding
	}
	client, err := dynamic.NewForConfig(tn.Config())
	if err != nil {
		t.Fatal(err)
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
	informer := factory.ForResource(spacesGVR).Informer()
	stop := make(chan struct{})
	defer close(stop)
	go informer.Run(stop)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("the informer did not sync")
	}
	store := func() []string {
		var names []string
		for _, obj := range informer.GetStore().List() {
			if m, err := meta.Accessor(obj); err == nil {
				names = append(names, m.GetName())
			}
		}
		slices.Sort(names)
		return names
	}
	waitFor(t, ctx, propagation, "the informer to hold the first six spaces", func() (bool, string) {
		got := store()
		return slices.Equal(got, e2eenv.Sorted(start...)), fmt.Sprint(got)
	})

	// The stream, paced so that both rollovers fall inside it.
	want := map[string]bool{}
	for _, ns := range start {
		want[ns] = true
	}
	var mu sync.Mutex
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- func() error {
			for i := range 4 {
				ns, _ := e.namespaceWithGrant(t, ctx, "roll-late", tn.UserSubject())
				mu.Lock()
				want[ns] = true
				mu.Unlock()
				victim := start[i]
				if i%2 == 0 {
					err := retry(ctx, writeTimeout, func(ctx context.Context) error {
						return e.kube.RbacV1().RoleBindings(victim).Delete(ctx, bindings[victim], metav1.DeleteOptions{})
					})
					if err != nil {
						return fmt.Errorf("revoking %s: %w", victim, err)
					}
				} else {
					err := retry(ctx, writeTimeout, func(ctx context.Context) error {
						err := e.kube.CoreV1().Namespaces().Delete(ctx, victim, metav1.DeleteOptions{})
						if apierrors.IsNotFound(err) {
							return nil
						}
						return err
					})
					if err != nil {
						return fmt.Errorf("deleting %s: %w", victim, err)
					}
				}
				mu.Lock()
				delete(want, victim)
				mu.Unlock()
				time.Sleep(1500 * time.Millisecond)
			}
			return nil
		}()
	}()

	original := e.vars["SERVER_PORT"]
	temporary := freePort(t)
	e.rollTo(t, ctx, temporary)
	e.rollTo(t, ctx, original)
	if err := <-streamDone; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	var truth []string
	for ns := range want {
		truth = append(truth, ns)
	}
	mu.Unlock()
	slices.Sort(truth)
	waitFor(t, ctx, convergence, "the informer's store to equal the truth after the rolling update", func() (bool, string) {
		got := store()
		return slices.Equal(got, truth), fmt.Sprintf("store %v, truth %v", got, truth)
	})
	time.Sleep(settle)
	if got := store(); !slices.Equal(got, truth) {
		t.Fatalf("the store left the truth after converging: %v, truth %v", got, truth)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c",
		`import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])`).Output()
	if err != nil {
		t.Fatalf("a free port: %v", err)
	}
	return string(out[:len(out)-1])
}

// rollTo is one step of a rolling update: a new server process on port, ready; kube-apiserver's APIService and
// Service pointed at it; the old process (the one in the pid file) terminated. The new one takes over the pid file
// and the log, so tests/controlplane/down.sh stops it.
func (e *env) rollTo(t *testing.T, ctx context.Context, port string) {
	t.Helper()
	v := e.vars
	serving := filepath.Dir(v["SERVER_CA_CERT"])
	logFile, err := os.OpenFile(filepath.Join(v["LOG_DIR"], "tenancy-apiserver.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(v["SERVER_BIN"], "serve", "--bind-address", "127.0.0.1", "--secure-port", port,
		"--tls-cert-file", filepath.Join(serving, "tls.crt"), "--tls-private-key-file", filepath.Join(serving, "tls.key"),
		"--kubeconfig", v["SERVER_KUBECONFIG"], "--access-mode", v["SERVER_ACCESS_MODE"],
		"--space-domain", v["SPACE_DOMAIN"], "--space-issuer", v["SPACE_ISSUER"])
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: it outlives this test process, as up.sh's server does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the server on %s: %v", port, err)
	}
	waitFor(t, ctx, 60*time.Second, "the new server process to be ready on "+port, func() (bool, string) {
		code, err := readyz(v["SERVER_CA_CERT"], port)
		return code == http.StatusOK, fmt.Sprint(code, err)
	})

	// Point kube-apiserver at it: the Service's port and the APIService's.
	portNumber, _ := strconv.Atoi(port)
	service := fmt.Sprintf(`[{"op":"replace","path":"/spec/ports/0/port","value":%d}]`, portNumber)
	if _, err := e.kube.CoreV1().Services("tenancy-system").Patch(ctx, "tenancy-apiserver", types.JSONPatchType,
		[]byte(service), metav1.PatchOptions{}); err != nil {
		t.Fatalf("pointing the Service at %s: %v", port, err)
	}
	apiservice := fmt.Sprintf(`{"spec":{"service":{"port":%d}}}`, portNumber)
	if err := e.kube.Discovery().RESTClient().Patch(types.MergePatchType).AbsPath(
		"/apis/apiregistration.k8s.io/v1/apiservices/v1.tenancy.loft.sh").Body([]byte(apiservice)).Do(ctx).Error(); err != nil {
		t.Fatalf("pointing the APIService at %s: %v", port, err)
	}

	// Stop the old process, and hand the pid file to the new one.
	pidFile := filepath.Join(v["PID_DIR"], "tenancy-apiserver.pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	old, err := strconv.Atoi(string(raw[:len(raw)-1]))
	if err != nil {
		t.Fatalf("pid file %s: %q", pidFile, raw)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(old, syscall.SIGTERM)
	// A process this test started must be reaped; one up.sh started is reaped by its own parent (or init).
	go func() { _ = cmd.Wait() }()
	waitFor(t, ctx, 30*time.Second, fmt.Sprintf("the old server process %d to exit", old), func() (bool, string) {
		return exited(old), "still running"
	})
	e.vars["SERVER_PORT"] = port
}

// exited says whether process pid is gone (or a zombie nobody has reaped yet: it serves nothing).
func exited(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// readyz asks the server on port, straight, whether it is ready.
func readyz(caFile, port string) (int, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	resp, err := client.Get("https://127.0.0.1:" + port + "/readyz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}
