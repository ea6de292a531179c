package statev1_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the Go code of proto/ the way
// `make generate` does, with the tool versions the Makefile pins, into a
// temporary directory, and fails unless every committed .pb.go file of the
// module is byte-for-byte what the generators make (and no other exists).
// It also lints the .proto files. It skips only when a generator cannot be
// built (no module proxy).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	root := moduleRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOBIN="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build a generator (go %s; the Go module proxy must be reachable): %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	build("install", "github.com/bufbuild/buf/cmd/buf@"+makeVar(t, mk, "BUF_VERSION"))
	build("install", "google.golang.org/grpc/cmd/protoc-gen-go-grpc@"+makeVar(t, mk, "PROTOC_GEN_GO_GRPC_VERSION"))
	// At go.mod's version of google.golang.org/protobuf, as make does.
	build("build", "-o", filepath.Join(bin, "protoc-gen-go"), "google.golang.org/protobuf/cmd/protoc-gen-go")

	out := t.TempDir()
	buf := func(args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "buf"), args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "BUF_CACHE_DIR="+t.TempDir())
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("buf %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	buf("lint")
	buf("generate", "-o", out)

	want := pbFiles(t, out)
	if len(want) == 0 {
		t.Fatalf("buf generate wrote no .pb.go file into %s", out)
	}
	got := pbFiles(t, root)
	for _, f := range want {
		fresh, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(root, f))
		switch {
		case err != nil:
			t.Errorf("%s: not committed (%v); run make generate", f, err)
		case !bytes.Equal(committed, fresh):
			t.Errorf("%s is stale: %s; run make generate", f, firstDiff(committed, fresh))
		}
	}
	for _, f := range got {
		if !slices.Contains(want, f) {
			t.Errorf("%s: no .proto generates it any more; delete it", f)
		}
	}
}

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// makeVar reads `NAME := value` from the Makefile.
func makeVar(t *testing.T, mk []byte, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s*:=\s*(\S+)\s*$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("Makefile: no %s := VERSION line", name)
	}
	return string(m[1])
}

// pbFiles lists the generated Go files under dir, relative to it, skipping
// bin/ and hidden directories.
func pbFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if d.IsDir() && rel != "." && (rel == "bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".pb.go") {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list generated files under %s: %v", dir, err)
	}
	return files
}

// firstDiff says where two files first differ.
func firstDiff(committed, fresh []byte) string {
	a, b := strings.Split(string(committed), "\n"), strings.Split(string(fresh), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb || i >= len(a) || i >= len(b) {
			return fmt.Sprintf("line %d is %q, generated %q", i+1, la, lb)
		}
	}
	return "they differ"
}
