package main

// Idle connections straight to the server's own port (not through kube-apiserver): TLS handshakes completed, then
// nothing sent. Each is watched by a read that returns only when the server closes it (or sends something).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

type idleConn struct {
	conn     net.Conn
	opened   time.Time
	closedAt atomic.Int64 // unix nanos when the server closed it, 0 while open
	why      atomic.Pointer[string]
	fromPeer atomic.Int64 // bytes the server sent
}

func holdIdle(ctx context.Context, e *e2eenv.Env, procs *procs, o options) bool {
	addr := net.JoinHostPort("127.0.0.1", e.Vars["SERVER_PORT"])
	cfg := &tls.Config{ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	if ca := e.Vars["SERVER_CA_CERT"]; ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			logf("%v", err)
			return false
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	} else {
		cfg.InsecureSkipVerify = true // loopback only; the env names no CA
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}

	logf("opening %d idle TLS connections to the server at %s (%d at a time)", o.idleConns, addr, o.concurrency)
	start := time.Now()
	conns := make([]*idleConn, o.idleConns)
	var failures atomic.Int64
	var firstErr atomic.Pointer[string]
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.concurrency)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				failures.Add(1)
				msg := err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				return
			}
			c := &idleConn{conn: conn, opened: time.Now()}
			conns[i] = c
			go c.watch()
		})
	}
	wg.Wait()
	opened := o.idleConns - int(failures.Load())
	// A connection the server closes during its handshake was refused (past its --max-connections): an outcome to
	// report, not a failure of the benchmark.
	logf("%d idle connections open in %v, %d refused", opened, time.Since(start).Round(time.Millisecond), failures.Load())
	if p := firstErr.Load(); p != nil {
		logf("first failure: %s", *p)
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.conn.Close()
			}
		}
	}()

	report := func(label string, held time.Duration) {
		open, peer := 0, int64(0)
		for _, c := range conns {
			if c != nil {
				if c.closedAt.Load() == 0 {
					open++
				}
				peer += c.fromPeer.Load()
			}
		}
		out("IDLE %s t=%ds open=%d closed=%d refused=%d bytes_from_server=%d", label, int(held.Seconds()), open, opened-open,
			failures.Load(), peer)
		procs.print(fmt.Sprintf("idle+%ds", int(held.Seconds())))
	}
	heldFrom := time.Now()
	report("opened", 0)
	for held := time.Duration(0); held < o.hold; {
		step := min(o.sampleEvery, o.hold-held)
		if !sleepCtx(ctx, step) {
			break
		}
		held += step
		report("holding", time.Since(heldFrom))
	}

	// When the server closed them, after their handshake, and why.
	var lifetimes []time.Duration
	reasons := map[string]int{}
	for _, c := range conns {
		if c == nil {
			continue
		}
		if at := c.closedAt.Load(); at != 0 {
			lifetimes = append(lifetimes, time.Unix(0, at).Sub(c.opened))
			if why := c.why.Load(); why != nil {
				reasons[*why]++
			}
		}
	}
	if len(lifetimes) > 0 {
		p := percentiles(lifetimes)
		var rs []string
		for r, n := range reasons {
			rs = append(rs, fmt.Sprintf("%d× %s", n, r))
		}
		sort.Strings(rs)
		out("IDLE closed_by_server=%d of %d after p50_s=%.1f max_s=%.1f (%s)", len(lifetimes), opened,
			p.p50.Seconds(), p.max.Seconds(), strings.Join(rs, "; "))
	} else {
		out("IDLE closed_by_server=0 of %d", opened)
	}
	return opened > 0 && ctx.Err() == nil
}

// watch reads until the connection ends: the server closing it (EOF, reset, an alert), or this program at the end.
func (c *idleConn) watch() {
	buf := make([]byte, 4096)
	for {
		n, err := c.conn.Read(buf)
		c.fromPeer.Add(int64(n))
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return // closed by this program
			}
			why := "EOF"
			if !errors.Is(err, io.EOF) {
				why = shortErr(err)
			}
			c.why.Store(&why)
			c.closedAt.Store(time.Now().UnixNano())
			return
		}
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
