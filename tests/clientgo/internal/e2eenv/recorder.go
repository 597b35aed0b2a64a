package e2eenv

// A recorder of the HTTP requests a client-go config makes: what was asked, when, what came back, and for a watch
// when and how its stream ended. The main suite reads which requests informers and clients made; the restart case
// also reads when each watch ended across a rolling update.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// SpacesPath is the collection path of spaces, as clients request it.
const SpacesPath = "/apis/tenancy.loft.sh/v1/spaces"

// Sorted returns a sorted copy of names (never nil, so it compares equal to an empty list).
func Sorted(names ...string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// Clock reports times relative to its start, for logs that line up.
type Clock struct{ Start time.Time }

// Since is the time since the clock's start, rounded for reading.
func (c Clock) Since() time.Duration { return time.Since(c.Start).Round(10 * time.Millisecond) }

// Exchange is one HTTP request a client made; for a watch, also when and how its stream ended.
type Exchange struct {
	At                  time.Duration
	Method, Path, Query string
	// When the response's headers (or the error) came.
	AnsweredAt  time.Duration
	Status      int
	ContentType string
	Err         error
	// Watch streams: when the body ended and with what (io.EOF for a clean end).
	EndedAt time.Duration
	EndErr  error
	Ended   bool
}

// Values is the request's query.
func (x Exchange) Values() url.Values {
	v, _ := url.ParseQuery(x.Query)
	return v
}

// IsSpaces tells a request for the spaces collection (a list or a watch).
func (x Exchange) IsSpaces() bool { return x.Path == SpacesPath }

// IsWatch tells a watch request.
func (x Exchange) IsWatch() bool {
	w := x.Values().Get("watch")
	return w == "true" || w == "1"
}

func (x Exchange) String() string {
	s := fmt.Sprintf("+%v %s %s", x.At, x.Method, x.Path)
	if x.Query != "" {
		s += "?" + x.Query
	}
	if x.Err != nil {
		return fmt.Sprintf("%s -> +%v %v", s, x.AnsweredAt, x.Err)
	}
	s += fmt.Sprintf(" -> +%v %d %s", x.AnsweredAt, x.Status, x.ContentType)
	if x.Ended {
		s += fmt.Sprintf(" (stream ended +%v: %v)", x.EndedAt, x.EndErr)
	}
	return s
}

// Recorder keeps every request made through a config it wrapped; its zero value starts its clock at the first one.
type Recorder struct {
	Clock     Clock
	mu        sync.Mutex
	exchanges []*Exchange
}

// RoundTripperFunc is a function as an http.RoundTripper.
type RoundTripperFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f RoundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// endWatcher notes the first error (io.EOF included) reading a response body, and a close before that.
type endWatcher struct {
	io.ReadCloser
	once sync.Once
	note func(error)
}

func (b *endWatcher) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(func() { b.note(err) })
	}
	return n, err
}

func (b *endWatcher) Close() error {
	b.once.Do(func() { b.note(errors.New("closed by the client")) })
	return b.ReadCloser.Close()
}

// Record makes cfg's clients report their requests to r.
func (r *Recorder) Record(cfg *rest.Config) {
	r.mu.Lock()
	if r.Clock.Start.IsZero() {
		r.Clock.Start = time.Now()
	}
	r.mu.Unlock()
	cfg.WrapTransport = transport.Wrappers(cfg.WrapTransport, func(next http.RoundTripper) http.RoundTripper {
		return RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
			x := &Exchange{At: r.Clock.Since(), Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery}
			resp, err := next.RoundTrip(req)
			r.mu.Lock()
			x.AnsweredAt, x.Err = r.Clock.Since(), err
			if resp != nil {
				x.Status = resp.StatusCode
				x.ContentType = resp.Header.Get("Content-Type")
				resp.Body = &endWatcher{ReadCloser: resp.Body, note: func(err error) {
					r.mu.Lock()
					defer r.mu.Unlock()
					x.Ended, x.EndedAt, x.EndErr = true, r.Clock.Since(), err
				}}
			}
			r.exchanges = append(r.exchanges, x)
			r.mu.Unlock()
			return resp, err
		})
	})
}

// Matching returns copies of the recorded exchanges for which keep is true.
func (r *Recorder) Matching(keep func(Exchange) bool) []Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Exchange
	for _, x := range r.exchanges {
		if keep(*x) {
			out = append(out, *x)
		}
	}
	return out
}

// String lists every recorded exchange, one a line, for failure messages.
func (r *Recorder) String() string {
	var b strings.Builder
	for _, x := range r.Matching(func(Exchange) bool { return true }) {
		b.WriteString("\n  " + x.String())
	}
	return b.String()
}
