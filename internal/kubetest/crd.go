package kubetest

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// MCSCRDs are sigs.k8s.io/mcs-api's CustomResourceDefinitions of
// ServiceExport and ServiceImport (multicluster.x-k8s.io).
//
//go:embed crds/*.yaml
var MCSCRDs embed.FS

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallMCS creates the MCS CRDs as Admin and waits until serviceexports
// and serviceimports are served.
func (s *Server) InstallMCS(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dyn, err := dynamic.NewForConfig(s.Config(Admin))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := MCSCRDs.ReadDir("crds")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		data, err := MCSCRDs.ReadFile("crds/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(data)
		if err != nil {
			t.Fatalf("kubetest: %s: %v", e.Name(), err)
		}
		for _, o := range objs {
			if _, err := dyn.Resource(crdResource).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("kubetest: create CRD %s: %v", o.GetName(), err)
			}
			names = append(names, o.GetName())
		}
	}
	for _, name := range names {
		err := waitUntil(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			o, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("kubetest: CRD %s not established: %v", name, err)
		}
	}
	for _, res := range []string{"serviceexports", "serviceimports"} {
		gvr := schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: res}
		err := waitUntil(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("kubetest: %s not served: %v", res, err)
		}
	}
}

func decodeAll(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("unexpected kind %q", u.GetKind())
		}
		out = append(out, u)
	}
}
