// Command watchload holds many long-lived watches through kube-apiserver on loopback, for benches/memory.sh: it
// measures what open watches cost the server (and kube-apiserver) in memory, and how fast a grant reaches every one
// of them. It can also hold idle TLS connections to the server's own port.
//
//	bash tests/env/up.sh /tmp/mem-env
//	cd tests/clientgo && TENANCY_E2E_ENV=/tmp/mem-env/env GOTOOLCHAIN=local go run ./cmd/watchload -watches 200 -grants 5
//	bash tests/controlplane/down.sh /tmp/mem-env
//
// With -watches W it opens W watches, -concurrency at a time, spread round-robin over -users impersonated users
// (<user-prefix><j> in group <group-prefix><j % groups>):
//   - -resource spaces: /apis/tenancy.loft.sh/v1/spaces as the user, from the resourceVersion of the user's own list
//     (what the server serves through the aggregator);
//   - -resource namespaces: kube-apiserver's /api/v1/namespaces as the admin (the baseline).
//
// A watch counts as open once its 200 arrived; with -read (the default) the run then makes a warm-up grant (namespace
// <grant-prefix>-<run>-0, with, for spaces, a RoleBinding of ClusterRole view to all the groups) and waits until every
// watch has received its ADDED: then all are open end to end. Then -grants timed grants, one after another at most
// one per -grant-every: for spaces, from just before the RoleBinding's create to each watch's ADDED; for namespaces,
// from just before the namespace's create. It prints p50/p90/p99/max over all (watch, grant) pairs; a watch that has
// not seen a grant within -grant-timeout is missed, and a miss fails the run. With -read=false the bodies are never
// read (the abuse case): after -hold, each is drained for a while to see which ones the server ended.
//
// With -idle-conns C it opens C TLS connections straight to the server's port (SERVER_PORT on 127.0.0.1), completes
// each handshake, sends nothing, and reports every -sample-every how many are still open (the server may close them).
//
// Output, for a script: lines `RSS <label> server=<KB> server_hwm=<KB> kube-apiserver=<KB> self=<KB>` (VmRSS and
// the server's VmHWM from /proc, pids from PID_DIR), `OPEN <n>` once all watches are open, `GRANTS ...`,
// `HOLDING <duration>`, `IDLE ...`, `UNREAD ...`; progress goes to stderr. It exits non-zero when a watch did not
// open, ended early (with -read), or missed a grant.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

type options struct {
	watches      int
	users        int
	groups       int
	userPrefix   string
	groupPrefix  string
	resource     string
	read         bool
	concurrency  int
	grants       int
	grantEvery   time.Duration
	grantTimeout time.Duration
	grantPrefix  string
	run          string
	hold         time.Duration
	churnEvery   time.Duration
	sampleEvery  time.Duration
	idleConns    int
	drain        time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.watches, "watches", 0, "long-lived watches to open through kube-apiserver")
	flag.IntVar(&o.users, "users", 100, "impersonated users the space watches are spread over (round-robin)")
	flag.IntVar(&o.groups, "groups", 10, "user j is in group <group-prefix><j % groups>")
	flag.StringVar(&o.userPrefix, "user-prefix", "mem-u", "users are <user-prefix><j>")
	flag.StringVar(&o.groupPrefix, "group-prefix", "mem-g", "groups are <group-prefix><k>")
	flag.StringVar(&o.resource, "resource", "spaces", "spaces (the server, as tenants) or namespaces (kube-apiserver, as the admin)")
	flag.BoolVar(&o.read, "read", true, "read the watch streams; false: never read them (the abuse case)")
	flag.IntVar(&o.concurrency, "concurrency", 50, "watches being opened at once")
	flag.IntVar(&o.grants, "grants", 10, "timed grants once all watches are open (with -read)")
	flag.DurationVar(&o.grantEvery, "grant-every", time.Second, "at most one grant per this period")
	flag.DurationVar(&o.grantTimeout, "grant-timeout", 30*time.Second, "a watch that has not seen a grant by then missed it")
	flag.StringVar(&o.grantPrefix, "grant-prefix", "mem-grant", "grant namespaces are <grant-prefix>-<run>-<k>")
	flag.StringVar(&o.run, "run", "", "run id in the grant namespaces' names (default: from the clock)")
	flag.DurationVar(&o.hold, "hold", 0, "keep everything open this long after the grants")
	flag.DurationVar(&o.churnEvery, "churn-every", 0, "while holding, label the warm-up namespace this often (every watch gets a MODIFIED); 0: never")
	flag.DurationVar(&o.sampleEvery, "sample-every", 5*time.Second, "RSS (and idle connection) samples while holding")
	flag.IntVar(&o.idleConns, "idle-conns", 0, "idle TLS connections to hold on the server's own port")
	flag.DurationVar(&o.drain, "drain", 15*time.Second, "with -read=false: how long the unread streams are drained after holding")
	flag.Parse()
	if o.watches < 0 || o.users <= 0 || o.groups <= 0 || o.concurrency <= 0 || o.grants < 0 || o.idleConns < 0 ||
		(o.resource != "spaces" && o.resource != "namespaces") || (o.watches == 0 && o.idleConns == 0) ||
		o.sampleEvery <= 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "watchload: bad flags (need -watches W > 0 or -idle-conns C > 0, users, groups, "+
			"concurrency > 0, -resource spaces|namespaces); see -help")
		os.Exit(2)
	}
	if o.run == "" {
		o.run = strconv.FormatInt(time.Now().Unix()%(36*36*36*36), 36)
	}
	os.Exit(run(o))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "watchload: "+format+"\n", args...)
}

// out prints one line for the script, on stdout.
func out(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
}

func run(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loaded, err := e2eenv.Load("e.g. `bash tests/env/up.sh /tmp/mem-env` then TENANCY_E2E_ENV=/tmp/mem-env/env go run ./cmd/watchload",
		e2eenv.Client{QPS: -1, Burst: 0, UserAgent: "tenancy-watchload"}, "PID_DIR", "SERVER_PORT")
	if err != nil {
		logf("%v", err)
		return 1
	}
	if !strings.HasPrefix(loaded.Vars["APISERVER_URL"], "https://127.0.0.1:") {
		logf("APISERVER_URL=%s is not on loopback; this program only runs against a local control plane",
			loaded.Vars["APISERVER_URL"])
		return 1
	}
	procs, err := newProcs(loaded.Vars["PID_DIR"])
	if err != nil {
		logf("%v", err)
		return 1
	}
	procs.print("before")

	failed := false
	if o.idleConns > 0 {
		if !holdIdle(ctx, loaded, procs, o) {
			failed = true
		}
	}
	if o.watches > 0 && ctx.Err() == nil {
		l, err := newLoad(loaded, o)
		if err != nil {
			logf("%v", err)
			return 1
		}
		if !l.run(ctx, procs) {
			failed = true
		}
	}
	if ctx.Err() != nil {
		logf("interrupted")
		return 1
	}
	if failed {
		logf("FAILED (see above)")
		return 1
	}
	logf("done")
	return 0
}

// sleepCtx sleeps d, or less when ctx ends; false when it ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
