// Package imagebuild builds the gateway's OCI image without a container
// daemon, as ko does: a statically linked strait binary on an empty base
// (FROM scratch), written as an OCI image layout and as a tarball that
// `docker load` and `podman load` accept. `make image` runs it through
// cmd/strait-image.
//
// What an image holds is fixed here, not by the caller:
//
//   - exactly one layer: the binary at BinaryPath (mode 0755), the CA
//     bundle at CABundlePath when one is given (the acme certificate
//     source verifies its directory with the system's roots, and a
//     scratch image has none), and the directories the gateway writes
//     (StateDir, owned by the image's user) or reads (ConfigDir);
//   - the binary must be a static ELF (no PT_INTERP): a dynamically
//     linked one would not start on an empty base, so Build refuses it;
//     the image's platform is the ELF's own machine;
//   - entrypoint BinaryPath, cmd `gateway --config ConfigDir/gateway.yaml`,
//     a numeric non-root user (User), the gateway's default listeners
//     that bind beyond loopback as exposed ports (DefaultPorts), and the
//     OCI labels source, version and revision;
//   - every timestamp is Config.Created (the epoch by default), so the
//     same binary gives the same image digest.
//
// TestImage builds the image from a freshly built binary, reads both
// outputs back and runs the binary it finds in the layer.
package imagebuild
