package kube

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/kubetest"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/straitmesh/strait/internal/metricstest"
)

// documentedRole reads the ClusterRole docs/kubernetes.md gives the
// gateway.
func documentedRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	return kubetest.DocumentedRole(t, "../../docs/kubernetes.md")
}

// without returns rules less one verb of one rule.
func without(rules []rbacv1.PolicyRule, rule int, verb string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for i, r := range rules {
		r = *r.DeepCopy()
		if i == rule {
			r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == verb })
		}
		if len(r.Verbs) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// TestRBAC runs discovery as a user with exactly the documented ClusterRole
// against an API server with RBAC authorization: it exports, writes
// conditions and keeps ServiceImports. Then, for every verb of the role,
// the role without it makes Start fail naming that verb: each is needed,
// and a role missing one is caught at start, not in production. The same
// rules in a Role serve a gateway limited to that namespace.
func TestRBAC(t *testing.T) {
	c := startCluster(t, "strait")
	ctx := context.Background()
	c.namespace(t, "demo")
	role := documentedRole(t)
	if _, err := c.core.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "strait-gateway"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "strait"}}}
	if _, err := c.core.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The documented role and Permissions say the same.
	var documented, checked []string
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			for _, res := range r.Resources {
				documented = append(documented, r.APIGroups[0]+"|"+res+"|"+v)
			}
		}
	}
	for _, p := range Permissions() {
		res := p.Resource
		if p.Subresource != "" {
			res += "/" + p.Subresource
		}
		checked = append(checked, p.Group+"|"+res+"|"+p.Verb)
	}
	slices.Sort(documented)
	slices.Sort(checked)
	if !reflect.DeepEqual(documented, checked) {
		t.Fatalf("docs/kubernetes.md grants %v; Start checks %v", documented, checked)
	}

	t.Run("the documented role is enough", func(t *testing.T) {
		r := startSource(t, c.Config("strait"), Config{})
		if _, err := c.core.CoreV1().Services("demo").Create(ctx, apiService("demo", "ledger", webPort("")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.core.DiscoveryV1().EndpointSlices("demo").Create(ctx, apiSlice("demo", "ledger", 8080, "10.3.0.1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.mcs.MulticlusterV1alpha1().ServiceExports("demo").Create(ctx, apiExport("demo", "ledger", ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, follow, "service exported", func() bool { return len(r.endpoints("demo/ledger")) == 1 })
		c.waitCondition(t, "demo", "ledger", "Valid", metav1.ConditionTrue, "Valid")
		c.waitCondition(t, "demo", "ledger", "Conflict", metav1.ConditionFalse, "NoConflicts")
		r.SetImports([]Import{{Namespace: "demo", Name: "profile", Ports: []ImportPort{{Port: 80}}}})
		eventually(t, 10*time.Second, "ServiceImport written", func() bool {
			_, err := c.mcs.MulticlusterV1alpha1().ServiceImports("demo").Get(ctx, "profile", metav1.GetOptions{})
			return err == nil
		})
		r.SetImports(nil)
		eventually(t, 10*time.Second, "ServiceImport deleted", func() bool {
			l, err := c.mcs.MulticlusterV1alpha1().ServiceImports("demo").List(ctx, metav1.ListOptions{})
			return err == nil && len(l.Items) == 0
		})
		for _, res := range []string{"forbidden", "error"} {
			if n := metricstest.Sum(t, r.reg, "strait_discovery_kube_writes_total", map[string]string{"result": res}); n != 0 {
				t.Errorf("%v writes %s as the documented role", n, res)
			}
		}
	})

	t.Run("each verb is needed", func(t *testing.T) {
		for i, rule := range role.Rules {
			for _, verb := range rule.Verbs {
				cut := role.DeepCopy()
				cut.Rules = without(role.Rules, i, verb)
				if _, err := c.core.RbacV1().ClusterRoles().Update(ctx, cut, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				res, sub, _ := strings.Cut(rule.Resources[0], "/")
				c.waitAccess(t, "strait", rule.APIGroups[0], res, sub, verb, false)
				s, err := New(Config{SyncTimeout: 10 * time.Second}, Options{RestConfig: c.Config("strait")})
				if err != nil {
					t.Fatal(err)
				}
				err = s.Start(ctx)
				s.Close()
				want := Permission{Group: rule.APIGroups[0], Resource: res, Subresource: sub, Verb: verb}.String()
				if err == nil || !strings.Contains(err.Error(), want+" in all namespaces") {
					t.Errorf("without %s: Start = %v, want it refused naming that verb", want, err)
				}
			}
		}
		if _, err := c.core.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a Role in each listed namespace", func(t *testing.T) {
		if err := c.core.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitAccess(t, "strait", "", "services", "", "list", false)
		nsRole := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "strait-gateway"}, Rules: role.Rules}
		if _, err := c.core.RbacV1().Roles("demo").Create(ctx, nsRole, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "strait-gateway"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nsRole.Name}, Subjects: binding.Subjects}
		if _, err := c.core.RbacV1().RoleBindings("demo").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.namespace(t, "other")
		if _, err := c.mcs.MulticlusterV1alpha1().ServiceExports("other").Create(ctx, &mcsv1a1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "x"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitAccess(t, "strait", "", "services", "", "list", false) // cluster-wide: still refused
		s, err := New(Config{SyncTimeout: 10 * time.Second}, Options{RestConfig: c.Config("strait")})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "in all namespaces") {
			t.Errorf("all namespaces with a Role in one: Start = %v, want refused", err)
		}
		s.Close()
		r := startSource(t, c.Config("strait"), Config{Namespaces: []string{"demo"}})
		if got := r.Services(); len(got) != 1 || got[0].Key() != "demo/ledger" {
			t.Errorf("namespaced discovery exports %v, want demo/ledger only", got)
		}
	})
}

// waitAccess waits until RBAC answers allowed for user's verb on a
// resource cluster-wide (authorization follows RBAC objects through a
// cache of its own).
func (c *cluster) waitAccess(t *testing.T, user, group, resource, sub, verb string, allowed bool) {
	t.Helper()
	eventually(t, 10*time.Second, "RBAC change in effect for "+verb+" "+resource, func() bool {
		r, err := c.core.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: group, Resource: resource, Subresource: sub, Verb: verb}}}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed == allowed
	})
}
