package imagebuild

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"regexp"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/straitmesh/strait/gateway"
)

// Paths and identity inside the image.
const (
	// BinaryPath is where the strait binary lives; it is the entrypoint.
	BinaryPath = "/usr/local/bin/strait"
	// CABundlePath is where Go's crypto/x509 looks for roots on Linux.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	// ConfigDir holds gateway.yaml; a deployment mounts it.
	ConfigDir = "/etc/strait"
	// StateDir is writable by User: the place for state.dataDir (Raft
	// state, and by default tls.storage) when no volume is mounted there.
	StateDir = "/var/lib/strait"
	// UID and GID of the image's user: 65532, the "nonroot" user of
	// distroless images, so that volume permissions carry over.
	UID = 65532
	GID = 65532
	// DefaultCABundle is Debian's ca-certificates bundle.
	DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"
	// Source is the org.opencontainers.image.source label.
	Source = "https://github.com/straitmesh/strait"
)

// User is the image config's user, numeric so that a runtime that checks
// runAsNonRoot can tell without an /etc/passwd.
var User = fmt.Sprintf("%d:%d", UID, GID)

// Entrypoint and Cmd of the image.
var (
	Entrypoint = []string{BinaryPath}
	Cmd        = []string{"gateway", "--config", ConfigDir + "/gateway.yaml"}
)

// Config is what varies between builds.
type Config struct {
	// Binary is the path of a statically linked strait binary. Required.
	Binary string
	// CABundle is a PEM file of root certificates copied to CABundlePath.
	// Empty: the image has no system roots, and the acme source then
	// needs tls.acme.roots.
	CABundle string
	// Version and Revision become the OCI labels version and revision.
	// Version defaults to "dev"; Revision may be empty.
	Version  string
	Revision string
	// Created is the time recorded in the image config and on every file
	// of the layer. Default: the Unix epoch, for reproducible digests.
	Created time.Time
	// Ports are the exposed ports ("15443/tcp"). Default DefaultPorts().
	Ports []string
}

// DefaultPorts returns the ports of the gateway's default listeners that
// bind beyond loopback: data, control, gossip (TCP and UDP) and Raft.
func DefaultPorts() []string {
	c := gateway.DefaultConfig()
	var ports []string
	add := func(addr string, protos ...string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" {
			return
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			return
		}
		for _, p := range protos {
			ports = append(ports, port+"/"+p)
		}
	}
	add(c.Listen.Data, "tcp")
	add(c.Listen.Admin, "tcp")
	add(c.Listen.Probes, "tcp")
	add(c.Listen.Connect, "tcp")
	add(c.Listen.Passthrough, "tcp")
	add(c.Listen.Control, "tcp")
	add(c.Gossip.Bind, "tcp", "udp")
	add(c.State.Bind, "tcp")
	sort.Strings(ports)
	return ports
}

// Build returns the image for cfg. It refuses a binary that is not a
// static ELF executable.
func Build(cfg Config) (v1.Image, error) {
	if cfg.Binary == "" {
		return nil, errors.New("build image: no binary given")
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Created.IsZero() {
		cfg.Created = time.Unix(0, 0)
	}
	cfg.Created = cfg.Created.UTC()
	if cfg.Ports == nil {
		cfg.Ports = DefaultPorts()
	}
	bin, err := os.ReadFile(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("build image: read binary: %w", err)
	}
	arch, err := staticArch(bin)
	if err != nil {
		return nil, fmt.Errorf("build image: %s: %w", cfg.Binary, err)
	}
	var ca []byte
	if cfg.CABundle != "" {
		if ca, err = os.ReadFile(cfg.CABundle); err != nil {
			return nil, fmt.Errorf("build image: read CA bundle: %w", err)
		}
	}
	layerTar, err := layerTar(bin, ca, cfg.Created)
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: cfg.Created},
			CreatedBy: "strait-image",
			Comment:   "strait " + cfg.Version,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: cfg.Created}
	cf.OS = "linux"
	cf.Architecture = arch
	exposed := map[string]struct{}{}
	for _, p := range cfg.Ports {
		exposed[p] = struct{}{}
	}
	labels := map[string]string{
		"org.opencontainers.image.source":  Source,
		"org.opencontainers.image.version": cfg.Version,
		"org.opencontainers.image.title":   "strait",
	}
	if cfg.Revision != "" {
		labels["org.opencontainers.image.revision"] = cfg.Revision
	}
	cf.Config = v1.Config{
		Entrypoint:   append([]string(nil), Entrypoint...),
		Cmd:          append([]string(nil), Cmd...),
		User:         User,
		WorkingDir:   StateDir,
		ExposedPorts: exposed,
		Labels:       labels,
		Env:          []string{"PATH=/usr/local/bin"},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image: set config: %w", err)
	}
	return img, nil
}

// staticArch returns the GOARCH of a static ELF executable.
func staticArch(bin []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("ELF type %s, want an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (has an ELF interpreter); build it with CGO_ENABLED=0")
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("ELF machine %s has no image platform here", f.Machine)
}

// layerTar is the uncompressed tar of the one layer: parent directories
// before their files, every entry dated t and owned by root except
// StateDir.
func layerTar(bin, ca []byte, t time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var mkdir func(dir string, uid, gid int, mode int64) error
	mkdir = func(dir string, uid, gid int, mode int64) error {
		if dir == "/" || dirs[dir] {
			return nil
		}
		if err := mkdir(path.Dir(dir), 0, 0, 0o755); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: dir[1:] + "/", Mode: mode,
			Uid: uid, Gid: gid, ModTime: t, Format: tar.FormatPAX,
		})
	}
	file := func(p string, data []byte, mode int64) error {
		if err := mkdir(path.Dir(p), 0, 0, 0o755); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: p[1:], Mode: mode, Size: int64(len(data)),
			ModTime: t, Format: tar.FormatPAX,
		}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := file(BinaryPath, bin, 0o755); err != nil {
		return nil, err
	}
	if ca != nil {
		if err := file(CABundlePath, ca, 0o644); err != nil {
			return nil, err
		}
	}
	if err := mkdir(ConfigDir, 0, 0, 0o755); err != nil {
		return nil, err
	}
	if err := mkdir(StateDir, UID, GID, 0o700); err != nil {
		return nil, err
	}
	// Some libraries write temporary files; scratch has no /tmp.
	if err := mkdir("/tmp", 0, 0, 0o1777); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tagRE is what a tag may be (distribution spec); notInTag what it may
// not hold.
var (
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	notInTag = regexp.MustCompile(`[^A-Za-z0-9_.-]`)
)

// Tag returns repo:version as an image reference, with the characters a
// tag may not hold (a "+" of a semver build) replaced by "-".
func Tag(repo, version string) (name.Tag, error) {
	t := notInTag.ReplaceAllString(version, "-")
	if !tagRE.MatchString(t) {
		return name.Tag{}, fmt.Errorf("version %q does not make an image tag", version)
	}
	tag, err := name.NewTag(repo + ":" + t)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image tag %s:%s: %w", repo, t, err)
	}
	return tag, nil
}

// WriteTarball writes img to file as a tarball `docker load` and
// `podman load` read, under tag.
func WriteTarball(file string, tag name.Tag, img v1.Image) error {
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write image tarball %s: %w", file, err)
	}
	return nil
}

// WriteLayout writes img as the only image of a new OCI image layout at
// dir, its index entry annotated with tag (org.opencontainers.image.ref.name
// holds the tag alone, io.containerd.image.name the whole reference, as
// `ctr import` and skopeo's oci: transport read them). An existing
// layout at dir is replaced.
func WriteLayout(dir string, tag name.Tag, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write image layout %s: %w", dir, err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: img,
		Descriptor: v1.Descriptor{Annotations: map[string]string{
			"org.opencontainers.image.ref.name": tag.TagStr(),
			"io.containerd.image.name":          tag.Name(),
		}},
	})
	if _, err := layout.Write(dir, idx); err != nil {
		return fmt.Errorf("write image layout %s: %w", dir, err)
	}
	return nil
}
