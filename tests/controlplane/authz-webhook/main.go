// Owns: the test control plane's authorization webhook (started by ../up.sh), so the server can be tested against a
// cluster whose authorizers are not only RBAC: decisions RBAC knows nothing about, visible only through
// SubjectAccessReviews. Standard library only, stateless and deterministic; kube-apiserver consults it only for users
// whose name starts with "webhook-" (a matchCondition in up.sh), and RBAC decides whatever it has no opinion on.
//
// Policy:
//   - user "webhook-<id>": every verb on every resource in any namespace named "webhook-<id>-..." (for the namespace
//     object itself kube-apiserver puts its name in resourceAttributes.namespace, so getting it is allowed too);
//   - user "webhook-all-<id>": get, list and watch core namespaces at any scope, cluster-wide included;
//   - anything else: no opinion (allowed: false without denied).
//
// Usage: authz-webhook -port PORT   (plain HTTP on 127.0.0.1; POST SubjectAccessReview JSON, GET /healthz)
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
)

type resourceAttributes struct {
	Namespace   string `json:"namespace"`
	Verb        string `json:"verb"`
	Group       string `json:"group"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource"`
}

type spec struct {
	User               string              `json:"user"`
	ResourceAttributes *resourceAttributes `json:"resourceAttributes"`
}

func decide(s spec) (bool, string) {
	ra := s.ResourceAttributes
	if ra == nil { // non-resource requests (/healthz, /apis, ...) are RBAC's business
		return false, ""
	}
	// Both rules are checked for every user: "webhook-all-x" is also a "webhook-<id>" with id "all-x".
	if id, ok := strings.CutPrefix(s.User, "webhook-all-"); ok && id != "" &&
		ra.Group == "" && ra.Resource == "namespaces" && ra.Subresource == "" &&
		(ra.Verb == "get" || ra.Verb == "list" || ra.Verb == "watch") {
		return true, "webhook: " + s.User + " may read every namespace"
	}
	if id, ok := strings.CutPrefix(s.User, "webhook-"); ok && id != "" &&
		strings.HasPrefix(ra.Namespace, s.User+"-") {
		return true, "webhook: " + s.User + " owns namespaces named " + s.User + "-*"
	}
	return false, ""
}

func review(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a SubjectAccessReview", http.StatusMethodNotAllowed)
		return
	}
	// The reply is the request object with status set, so apiVersion, kind and every field we do not model round-trip.
	var obj map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&obj); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	raw, _ := json.Marshal(obj["spec"])
	var s spec
	if err := json.Unmarshal(raw, &s); err != nil {
		http.Error(w, "spec: "+err.Error(), http.StatusBadRequest)
		return
	}
	allowed, reason := decide(s)
	status := map[string]any{"allowed": allowed}
	if reason != "" {
		status["reason"] = reason
	}
	obj["status"] = status
	// One line per decision: these users exist only in tests, so this stays small and explains failures.
	log.Printf("spec=%s allowed=%v", raw, allowed)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(obj)
}

func main() {
	port := flag.Int("port", 0, "port to listen on (127.0.0.1 only)")
	flag.Parse()
	if *port <= 0 || *port > 65535 {
		log.Fatal("-port is required")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/", review)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	log.Printf("authz-webhook listening on http://%s", addr)
	log.Fatal(http.ListenAndServe(addr, mux))
}
