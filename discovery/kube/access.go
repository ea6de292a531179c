package kube

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Permission is one verb on one resource that discovery needs, and why.
type Permission struct {
	Group       string // API group; "" is the core group
	Resource    string
	Subresource string
	Verb        string
	Why         string
}

// String returns "verb resource[/subresource].group".
func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions lists every verb discovery needs, no more; Start checks
// each and refuses to run without one. docs/kubernetes.md documents the
// same list, and TestRBAC proves it is enough and that each is needed.
func Permissions() []Permission {
	const mcs = "multicluster.x-k8s.io"
	return []Permission{
		{"", "services", "", "list", "read the ports, type and selector of exported Services (informer)"},
		{"", "services", "", "watch", "follow changes to them (informer)"},
		{"discovery.k8s.io", "endpointslices", "", "list", "read the endpoints of exported Services (informer)"},
		{"discovery.k8s.io", "endpointslices", "", "watch", "follow endpoints as pods come, go and turn ready (informer)"},
		{mcs, "serviceexports", "", "list", "find the Services to export (informer)"},
		{mcs, "serviceexports", "", "watch", "follow exports as they are created and deleted (informer)"},
		{mcs, "serviceexports", "status", "update", "set the Valid and Conflict conditions"},
		{mcs, "serviceimports", "", "list", "find the ServiceImports this gateway owns (informer)"},
		{mcs, "serviceimports", "", "watch", "put back owned ServiceImports that someone changed or deleted (informer)"},
		{mcs, "serviceimports", "", "get", "tell an existing ServiceImport of another owner from one not yet seen"},
		{mcs, "serviceimports", "", "create", "write a ServiceImport for each imported service"},
		{mcs, "serviceimports", "", "update", "keep its ports in step with the imports"},
		{mcs, "serviceimports", "", "delete", "remove it when the import goes"},
	}
}

// checkAccess asks the API server, with SelfSubjectAccessReviews, whether
// discovery's identity has every Permission in each namespace (or
// cluster-wide for ""), and names every one it lacks.
func (s *Source) checkAccess(ctx context.Context) error {
	var missing []string
	for _, sc := range s.scopes {
		for _, p := range Permissions() {
			r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: sc.ns, Group: p.Group,
					Resource: p.Resource, Subresource: p.Subresource, Verb: p.Verb}}}
			got, err := s.core.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("check kubernetes permissions (%s): %w", p, err)
			}
			if !got.Status.Allowed {
				where := "in all namespaces"
				if sc.ns != "" {
					where = "in namespace " + sc.ns
				}
				missing = append(missing, p.String()+" "+where)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kubernetes discovery lacks permissions (docs/kubernetes.md lists them): %s", strings.Join(missing, "; "))
	}
	return nil
}
