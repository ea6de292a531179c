package kubetest

import (
	"os"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// DocumentedRole reads the ClusterRole that the Markdown file at path
// (docs/kubernetes.md) gives the gateway, from its first yaml block of
// kind ClusterRole, so that the documentation is what tests hold the
// gateway and the chart to.
func DocumentedRole(t testing.TB, path string) *rbacv1.ClusterRole {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(data), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.Contains(block, "kind: ClusterRole") {
			continue
		}
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(block), &role); err != nil {
			t.Fatalf("%s ClusterRole: %v", path, err)
		}
		return &role
	}
	t.Fatalf("%s has no ClusterRole", path)
	return nil
}
