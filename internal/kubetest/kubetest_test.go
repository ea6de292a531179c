package kubetest

import (
	"bytes"
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
)

// TestServer: the API server starts, authenticates the admin and a user
// by token, authorizes the user by RBAC only (nothing granted: refused),
// serves the MCS CRDs once installed, and survives Stop and Restart with
// its data.
func TestServer(t *testing.T) {
	s := Start(t, Options{Users: []string{"nobody"}})
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(s.Config(Admin))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin creates a namespace: %v", err)
	}
	nobody := kubernetes.NewForConfigOrDie(s.Config("nobody"))
	if _, err := nobody.CoreV1().Services("kubetest").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a user without RBAC grants lists services: err = %v, want forbidden", err)
	}
	s.InstallMCS(t)

	rc, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig(t, Admin))
	if err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{}); err == nil {
		t.Error("the API server answers after Stop")
	}
	s.Restart(t)
	if _, err := kubernetes.NewForConfigOrDie(rc).CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{}); err != nil {
		t.Errorf("after Restart, through the kubeconfig: %v", err)
	}
}

// TestCRDsMatchModule: the embedded CRDs are those of the mcs-api module
// go.mod requires.
func TestCRDsMatchModule(t *testing.T) {
	for name, want := range map[string][]byte{
		"crds/multicluster.x-k8s.io_serviceexports.yaml": mcscrd.ServiceExportCRD,
		"crds/multicluster.x-k8s.io_serviceimports.yaml": mcscrd.ServiceImportCRD,
	} {
		got, err := MCSCRDs.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from sigs.k8s.io/mcs-api's config/crd: copy it again", name)
		}
	}
}
