// Owns: a real cert-manager controller (the library of github.com/cert-manager/cert-manager, version pinned in go.mod)
// run out of cluster against the e2e tests' local control plane, where no pod can run. Built by build.sh.
// cert-manager's own binary (its cmd/controller module) cannot be built from the Go module proxy, so this is the
// minimal wiring of cmd/controller/app/controller.go: the controllers below, and no leader election, webhook, metrics,
// healthz or profiling server. Without the webhook nothing validates or defaults cert-manager's resources: tests must
// write them complete.
//
// Usage: cert-manager --kubeconfig PATH [--cluster-resource-namespace NS] [-v N]
// Runs until SIGTERM or SIGINT, then stops its controllers and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager"
	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Imported for their init(), which registers them in controller.Known() (controllers) or in the issuer factory
	// that the issuers controllers consult to decide an issuer is Ready (issuer backends).
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// CA and SelfSigned issuers only: ACME, Vault and Venafi need servers the tests do not have. SelfSigned costs nothing
// and lets a test mint its CA through cert-manager itself instead of openssl.
var enabled = []string{
	"issuers", "clusterissuers",
	"certificates-trigger", "certificates-issuing", "certificates-key-manager", "certificates-request-manager",
	"certificates-readiness", "certificates-revision-manager",
	// Issuers sign only approved CertificateRequests, and without this nothing approves them.
	"certificaterequests-approver",
	"certificaterequests-issuer-ca", "certificaterequests-issuer-selfsigned",
	"ingress-shim",
}

func main() {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster to run against (required)")
	clusterResourceNamespace := fs.String("cluster-resource-namespace", "cert-manager",
		"namespace of the Secrets that ClusterIssuers refer to")
	klog.InitFlags(fs) // -v: 0 logs errors and retries, 2 what cert-manager does, up to 5 (trace)
	_ = fs.Parse(os.Args[1:])
	if *kubeconfig == "" || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	logf.InitLogs()
	defer logf.FlushLogs()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// A signal during start-up makes controllers give up waiting for their caches with an error: still a clean stop.
	if err := run(ctx, *kubeconfig, *clusterResourceNamespace); err != nil && ctx.Err() == nil {
		klog.ErrorS(err, "cert-manager failed")
		logf.FlushLogs()
		os.Exit(1)
	}
	klog.Info("cert-manager stopped")
}

func run(ctx context.Context, kubeconfig, clusterResourceNamespace string) error {
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	// Any controller returning an error cancels the others, as in cert-manager's own binary.
	g, ctx := errgroup.WithContext(ctx)

	// cert-manager's defaults (internal/apis/config/controller/v1alpha1/defaults.go, which is internal and so cannot
	// be imported), except where noted.
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig: kubeconfig,
		// Twice the defaults (20/50): the test control plane runs without API Priority and Fairness, so this
		// client-side limit is the only one, and a test creating many Certificates should not wait on it.
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerKind:                 "Issuer",
			DefaultIssuerGroup:                cmapi.GroupName,
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
		},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes: []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			// Zero would retry a failed issuance in a hot loop.
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: 60},
	})
	if err != nil {
		return err
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}

	// Every controller registers its informers while it is constructed, so the factories start only after all are.
	for _, name := range enabled {
		construct, ok := controller.Known()[name]
		if !ok {
			return fmt.Errorf("controller %q is not registered: its package is not imported", name)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing controller %q: %w", name, err)
		}
		g.Go(func() error { return c.Run(5, ctx) })
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	klog.InfoS("cert-manager started", "controllers", enabled, "clusterResourceNamespace", clusterResourceNamespace)

	err = g.Wait()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}
