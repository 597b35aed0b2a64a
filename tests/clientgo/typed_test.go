package clientgo

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// Space is what a Go client of tenancy.loft.sh/v1 would declare: the typed-like side of the round trip.
type Space struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SpaceSpec   `json:"spec,omitempty"`
	Status            SpaceStatus `json:"status,omitempty"`
}

type SpaceSpec struct {
	Account    string                 `json:"account,omitempty"`
	Finalizers []corev1.FinalizerName `json:"finalizers,omitempty"`
}

type SpaceStatus struct {
	Phase corev1.NamespacePhase `json:"phase,omitempty"`
}

type SpaceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Space `json:"items"`
}

func (in *Space) DeepCopyInto(out *Space) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Finalizers = slices.Clone(in.Spec.Finalizers)
}

func (in *Space) DeepCopyObject() runtime.Object {
	out := new(Space)
	in.DeepCopyInto(out)
	return out
}

func (in *SpaceList) DeepCopyObject() runtime.Object {
	out := &SpaceList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]Space, len(in.Items))
	for i := range in.Items {
		in.Items[i].DeepCopyInto(&out.Items[i])
	}
	return out
}

var (
	tenancyScheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		s.AddKnownTypes(tenancyGV, &Space{}, &SpaceList{})
		metav1.AddToGroupVersion(s, tenancyGV)
		return s
	}()
	tenancyCodecs = serializer.NewCodecFactory(tenancyScheme).WithoutConversion()
)

// typedClient is a REST client for tenancy.loft.sh/v1 decoding into Space and SpaceList, as generated clients do.
func typedClient(t *testing.T, cfg *rest.Config) *rest.RESTClient {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &tenancyGV
	c.APIPath = "/apis"
	c.NegotiatedSerializer = tenancyCodecs
	c.ContentType = runtime.ContentTypeJSON
	c.AcceptContentTypes = runtime.ContentTypeJSON
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// A Space decodes into a Go struct through a typed REST client, and mirrors its namespace: uid, resourceVersion,
// labels, creationTimestamp, spec.account (from the account label), spec.finalizers and status.phase.
func TestTypedRoundTrip(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	tn := e.newTenant("typed")
	account := name("acct")
	ns := e.namespace(t, "typed", map[string]string{accountLabel: account, "team": "typed"})
	e.grant(t, ns.Name, tn.UserSubject())
	client := typedClient(t, tn.Config())

	var space Space
	var current *corev1.Namespace
	// The namespace may still change (its binding, the controllers), and the server's cache follows it: compare
	// the space with the namespace as the admin reads it at the same moment, until they agree.
	eventually(t, propagation, "the space mirrors its namespace", func() (bool, string) {
		space = Space{}
		if err := client.Get().Resource("spaces").Name(ns.Name).Do(ctx).Into(&space); err != nil {
			return false, fmt.Sprintf("get space %s: %v", ns.Name, err)
		}
		var err error
		current, err = e.kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Sprintf("get namespace %s: %v", ns.Name, err)
		}
		ok := space.ResourceVersion == current.ResourceVersion
		return ok, fmt.Sprintf("space resourceVersion %q, namespace %q", space.ResourceVersion, current.ResourceVersion)
	})
	if space.Name != ns.Name || space.UID != current.UID {
		t.Errorf("space name/uid %s/%s; namespace %s/%s", space.Name, space.UID, current.Name, current.UID)
	}
	if !maps.Equal(space.Labels, current.Labels) {
		t.Errorf("space labels %v; namespace labels %v", space.Labels, current.Labels)
	}
	if !space.CreationTimestamp.Equal(&current.CreationTimestamp) || space.CreationTimestamp.IsZero() {
		t.Errorf("space creationTimestamp %v; namespace %v", space.CreationTimestamp, current.CreationTimestamp)
	}
	if space.Spec.Account != account {
		t.Errorf("space spec.account %q; want %q (the namespace's %s label)", space.Spec.Account, account, accountLabel)
	}
	if want := []corev1.FinalizerName{corev1.FinalizerKubernetes}; !slices.Equal(space.Spec.Finalizers, want) ||
		!slices.Equal(current.Spec.Finalizers, want) {
		t.Errorf("space spec.finalizers %q, namespace %q; want %q", space.Spec.Finalizers, current.Spec.Finalizers, want)
	}
	if space.Status.Phase != corev1.NamespaceActive || current.Status.Phase != corev1.NamespaceActive {
		t.Errorf("space status.phase %q, namespace %q; want Active", space.Status.Phase, current.Status.Phase)
	}
	if len(space.ManagedFields) > 0 {
		t.Errorf("space carries the namespace's managedFields: %v", space.ManagedFields)
	}

	// The list decodes into SpaceList, with the same item.
	var list SpaceList
	if err := client.Get().Resource("spaces").Do(ctx).Into(&list); err != nil {
		t.Fatalf("list spaces into SpaceList: %v", err)
	}
	if list.ResourceVersion == "" || len(list.Items) != 1 || list.Items[0].UID != current.UID {
		t.Errorf("typed list: resourceVersion %q, items %+v; want one item with uid %s", list.ResourceVersion, list.Items, current.UID)
	}
}
