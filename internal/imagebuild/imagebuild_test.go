package imagebuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/straitmesh/strait/internal/imagebuild"
)

// buildStrait builds cmd/strait as `make image` does: static, trimmed,
// the version set by ldflags.
func buildStrait(t *testing.T, out, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build strait: %v", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", "-X main.version="+version,
		"-o", out, "github.com/straitmesh/strait/cmd/strait")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/strait: %v\n%s", err, b)
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles reads a layer's uncompressed tar.
func layerFiles(t *testing.T, l v1.Layer) map[string]entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read layer: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimSuffix(h.Name, "/")
		if _, dup := files[name]; dup {
			t.Errorf("layer has %s twice", name)
		}
		files[name] = entry{h, data}
	}
	return files
}

func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "strait")
	const version = "v9.8.7-test+meta"
	buildStrait(t, bin, version)

	ca := filepath.Join(dir, "roots.pem")
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nroots for the test\n-----END CERTIFICATE-----\n")
	if b, err := os.ReadFile(imagebuild.DefaultCABundle); err == nil {
		caPEM = b
	}
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	img, err := imagebuild.Build(imagebuild.Config{
		Binary: bin, CABundle: ca, Version: version, Revision: "0123abcd", Created: created,
	})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := imagebuild.Tag("strait", version)
	if err != nil {
		t.Fatal(err)
	}
	if tag.String() != "strait:v9.8.7-test-meta" {
		t.Errorf("tag %s, want strait:v9.8.7-test-meta", tag)
	}
	tarFile := filepath.Join(dir, "strait.tar")
	if err := imagebuild.WriteTarball(tarFile, tag, img); err != nil {
		t.Fatal(err)
	}
	ociDir := filepath.Join(dir, "oci")
	if err := imagebuild.WriteLayout(ociDir, tag, img); err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	fromTar, err := tarball.ImageFromPath(tarFile, &tag)
	if err != nil {
		t.Fatalf("read tarball back: %v", err)
	}
	lp, err := layout.FromPath(ociDir)
	if err != nil {
		t.Fatalf("read layout back: %v", err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("layout index has %d manifests, want 1", len(im.Manifests))
	}
	if got := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != tag.TagStr() {
		t.Errorf("layout ref.name %q, want %q", got, tag.TagStr())
	}
	if im.Manifests[0].Digest != want {
		t.Errorf("layout holds %s, built %s", im.Manifests[0].Digest, want)
	}
	fromLayout, err := lp.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		img  v1.Image
	}{{"tarball", fromTar}, {"layout", fromLayout}} {
		t.Run(tc.name, func(t *testing.T) {
			checkImage(t, tc.img, bin, caPEM, version, created)
		})
	}

	// The tarball's image is the built one, layers and config alike.
	got, err := fromTar.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	wantCfg, _ := img.ConfigName()
	if got != wantCfg {
		t.Errorf("tarball config %s, built %s", got, wantCfg)
	}
	m, err := fromLayout.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest %s, config %s, layers %v: want OCI media types and one layer", m.MediaType, m.Config.MediaType, m.Layers)
	}

	// An independent reader, the containers/image library of podman and
	// skopeo, takes both forms.
	t.Run("skopeo", func(t *testing.T) {
		skopeo, err := exec.LookPath("skopeo")
		if err != nil {
			t.Skip("skopeo not found (Debian: skopeo): the image is read back with go-containerregistry only")
		}
		for _, ref := range []string{"oci:" + ociDir + ":" + tag.TagStr(), "docker-archive:" + tarFile} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, skopeo, "inspect", "--config", ref).Output()
			cancel()
			if err != nil {
				t.Errorf("skopeo inspect --config %s: %v", ref, err)
				continue
			}
			var cf v1.ConfigFile
			if err := json.Unmarshal(out, &cf); err != nil {
				t.Errorf("skopeo inspect --config %s: %v\n%s", ref, err, out)
				continue
			}
			if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/strait"}) || len(cf.RootFS.DiffIDs) != 1 {
				t.Errorf("skopeo reads %s as user %q, entrypoint %q, %d layers", ref, cf.Config.User, cf.Config.Entrypoint, len(cf.RootFS.DiffIDs))
			}
		}
	})

	// The same inputs give the same digest.
	again, err := imagebuild.Build(imagebuild.Config{
		Binary: bin, CABundle: ca, Version: version, Revision: "0123abcd", Created: created,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("rebuilt digest %s, first %s", d, want)
	}
}

func checkImage(t *testing.T, img v1.Image, bin string, caPEM []byte, version string, created time.Time) {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !reflect.DeepEqual(c.Entrypoint, []string{"/usr/local/bin/strait"}) {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if !reflect.DeepEqual(c.Cmd, []string{"gateway", "--config", "/etc/strait/gateway.yaml"}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if u, _, _ := strings.Cut(c.User, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("user %q is root", c.User)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	// The gateway's default listeners beyond loopback: data, gossip,
	// control, Raft.
	if wantPorts := []string{"15012/tcp", "15443/tcp", "7946/tcp", "7946/udp", "8300/tcp"}; !slices.Equal(ports, wantPorts) {
		t.Errorf("exposed ports %v, want %v", ports, wantPorts)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/straitmesh/strait",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": "0123abcd",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("created %s, want %s", cf.Created.Time, created)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	files := layerFiles(t, layers[0])
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	wantNames := []string{"/etc", "/etc/ssl", "/etc/ssl/certs", "/etc/ssl/certs/ca-certificates.crt", "/etc/strait",
		"/tmp", "/usr", "/usr/local", "/usr/local/bin", "/usr/local/bin/strait", "/var", "/var/lib", "/var/lib/strait"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("layer holds %v, want %v", names, wantNames)
	}
	b, ok := files["/usr/local/bin/strait"]
	if !ok {
		t.Fatal("no /usr/local/bin/strait in the layer")
	}
	if b.hdr.Typeflag != tar.TypeReg || b.hdr.Mode&0o7777 != 0o755 || b.hdr.Uid != 0 {
		t.Errorf("binary: type %c mode %o uid %d, want a regular file 0755 of root", b.hdr.Typeflag, b.hdr.Mode, b.hdr.Uid)
	}
	orig, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.data, orig) {
		t.Error("the layer's binary differs from the built one")
	}
	if st := files["/var/lib/strait"].hdr; st.Uid != 65532 || st.Gid != 65532 || st.Mode&0o777 != 0o700 {
		t.Errorf("/var/lib/strait: %d:%d %o, want 65532:65532 0700", st.Uid, st.Gid, st.Mode)
	}
	if caf := files["/etc/ssl/certs/ca-certificates.crt"]; !bytes.Equal(caf.data, caPEM) || caf.hdr.Mode&0o777 != 0o644 {
		t.Errorf("CA bundle: %d bytes mode %o, want the given %d bytes 0644", len(caf.data), caf.hdr.Mode, len(caPEM))
	}
	for n, e := range files {
		if !e.hdr.ModTime.Equal(created) {
			t.Errorf("%s dated %s, want %s", n, e.hdr.ModTime, created)
		}
	}

	// Statically linked: no ELF interpreter.
	f, err := elf.NewFile(bytes.NewReader(b.data))
	if err != nil {
		t.Fatalf("binary in the layer: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary in the layer has PT_INTERP: dynamically linked")
		}
	}
	f.Close()

	// It runs, from a directory of its own.
	run := t.TempDir()
	exe := filepath.Join(run, "strait")
	if err := os.WriteFile(exe, b.data, os.FileMode(b.hdr.Mode)&0o777); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "version")
	cmd.Dir = run
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("strait version from the layer: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "strait "+version+" ") {
		t.Errorf("strait version printed %q, want it to start with %q", out, "strait "+version)
	}
}

// A binary that needs a dynamic loader would not start on scratch: the
// system's own /bin/true is one.
func TestBuildRefusesADynamicBinary(t *testing.T) {
	const dyn = "/bin/true"
	f, err := elf.Open(dyn)
	if err != nil {
		t.Skipf("%s: %v", dyn, err)
	}
	dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !dynamic {
		t.Skipf("%s is static on this machine", dyn)
	}
	_, err = imagebuild.Build(imagebuild.Config{Binary: dyn})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("Build of %s: %v, want a refusal naming it dynamically linked", dyn, err)
	}
	if _, err := imagebuild.Build(imagebuild.Config{Binary: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("Build of a missing binary succeeded")
	}
	if _, err := imagebuild.Build(imagebuild.Config{Binary: "imagebuild_test.go"}); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("Build of a text file: %v, want not an ELF executable", err)
	}
}
