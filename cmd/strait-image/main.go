// Command strait-image builds the gateway's OCI image from a static strait
// binary without a container daemon (internal/imagebuild): an OCI image
// layout directory and a tarball for `docker load` / `podman load`.
// `make image` builds the binary and runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/straitmesh/strait/internal/imagebuild"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "strait-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fs := flag.NewFlagSet("strait-image", flag.ContinueOnError)
	var (
		cfg     imagebuild.Config
		created string
		repo    string
		oci     string
		tarFile string
	)
	fs.StringVar(&cfg.Binary, "binary", "", "static strait binary (CGO_ENABLED=0)")
	fs.StringVar(&cfg.CABundle, "ca-bundle", imagebuild.DefaultCABundle, `PEM roots for `+imagebuild.CABundlePath+` ("" for none; a missing default is skipped)`)
	fs.StringVar(&cfg.Version, "version", "dev", "version label and tag")
	fs.StringVar(&cfg.Revision, "revision", "", "revision label (the commit)")
	fs.StringVar(&created, "created", "0", "creation time, Unix seconds (e.g. the commit's)")
	fs.StringVar(&repo, "repo", "strait", "repository of the tarball's tag")
	fs.StringVar(&oci, "oci", "", "write an OCI image layout to this directory")
	fs.StringVar(&tarFile, "tarball", "", "write a docker-load tarball to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if oci == "" && tarFile == "" {
		return errors.New("nothing to write: give --oci, --tarball or both")
	}
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return fmt.Errorf("--created: want Unix seconds, found %q", created)
	}
	cfg.Created = time.Unix(secs, 0)
	if cfg.CABundle == imagebuild.DefaultCABundle {
		if _, err := os.Stat(cfg.CABundle); errors.Is(err, os.ErrNotExist) {
			log.Warn("no CA bundle on this machine (Debian: ca-certificates); the image has no system roots, so the acme source needs tls.acme.roots", "path", cfg.CABundle)
			cfg.CABundle = ""
		}
	}
	tag, err := imagebuild.Tag(repo, cfg.Version)
	if err != nil {
		return err
	}
	img, err := imagebuild.Build(cfg)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	if oci != "" {
		if err := imagebuild.WriteLayout(oci, tag, img); err != nil {
			return err
		}
		log.Info("wrote OCI image layout", "dir", oci, "tag", tag.String(), "digest", digest.String())
	}
	if tarFile != "" {
		if err := imagebuild.WriteTarball(tarFile, tag, img); err != nil {
			return err
		}
		log.Info("wrote image tarball (docker load -i / podman load -i)", "file", tarFile, "tag", tag.String(), "digest", digest.String())
	}
	return nil
}
