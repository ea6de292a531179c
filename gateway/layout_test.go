package gateway_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// uses returns, for every file, the selectors pkg.Name used through the
// import of path.
func uses(f *ast.File, path string) []string {
	local := ""
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		if p != path {
			continue
		}
		local = p[strings.LastIndex(p, "/")+1:]
		if im.Name != nil {
			local = im.Name.Name
		}
	}
	if local == "" {
		return nil
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == local {
				out = append(out, sel.Sel.Name)
			}
		}
		return true
	})
	return out
}

// TestWireAndRouteDoNotTouchTheNetwork: the wire formats and the routing
// decisions are pure. Neither package imports a socket, TLS, multiplexer
// or RPC package, and of net/http only the header type and status codes
// are used; no function named Dial or Listen is called.
func TestWireAndRouteDoNotTouchTheNetwork(t *testing.T) {
	forbidden := []string{"net", "crypto/tls", "syscall", "golang.org/x/sys/unix", "os/exec", "github.com/libp2p/go-yamux/v5",
		"github.com/hashicorp/memberlist", "github.com/hashicorp/raft", "google.golang.org/grpc"}
	for _, dir := range []string{"wire", "route"} {
		for _, f := range parseDir(t, dir) {
			for _, im := range f.Imports {
				p, _ := strconv.Unquote(im.Path.Value)
				if slices.Contains(forbidden, p) {
					t.Errorf("gateway/%s imports %s", dir, p)
				}
			}
			for _, name := range uses(f, "net/http") {
				if name != "Header" && name != "StatusText" && !strings.HasPrefix(name, "Status") {
					t.Errorf("gateway/%s uses http.%s", dir, name)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if s := sel.Sel.Name; strings.HasPrefix(s, "Dial") || strings.HasPrefix(s, "Listen") {
						t.Errorf("gateway/%s calls %s", dir, s)
					}
				}
				return true
			})
		}
	}
}

// TestCLIUsesClientsNotGatewayInternals: cmd/strait runs a gateway from
// its config (Start) and otherwise reaches gateways through
// gateway/admin and the routing state's client.
func TestCLIUsesClientsNotGatewayInternals(t *testing.T) {
	allowed := []string{"Start", "Options", "Config", "DefaultConfig", "Gateway"}
	for _, f := range parseDir(t, filepath.Join("..", "cmd", "strait")) {
		for _, name := range uses(f, "github.com/straitmesh/strait/gateway") {
			if !slices.Contains(allowed, name) {
				t.Errorf("cmd/strait uses gateway.%s; the CLI talks to gateways through gateway/admin and the state client", name)
			}
		}
	}
}
