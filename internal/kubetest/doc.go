// Package kubetest starts a real Kubernetes API server for tests: etcd
// and kube-apiserver as child processes on loopback, with token
// authentication and RBAC authorization, and the Multi-Cluster Services
// CRDs on demand. No fake clientset, no mocks: what a test sees is what a
// cluster's API server does.
//
// What it guarantees:
//
//   - kube-apiserver is built from the k8s.io/kubernetes module at
//     Version by the small module in apiserver/ (its go.mod requires
//     k8s.io/kubernetes and replaces each staging module with the same
//     name at the matching v0 version), once per content of that module,
//     into the user's cache directory. A build is shared by every test
//     process on the machine (a file lock), so parallel packages build
//     it once. A cold build takes minutes; `make test` builds it before
//     the tests run (internal/kubetest/prebuild).
//   - etcd is Debian's etcd-server. When it is missing and the test runs
//     as root (CI), it is installed with apt-get; a failed install fails
//     the test. Not root and missing, the test is skipped with a message
//     naming the package to install.
//   - Everything binds 127.0.0.1 on ports from internal/freeport; data
//     lives in the test's temporary directories; the processes die with
//     the test process (Pdeathsig) and are stopped at cleanup.
//   - Every wait is bounded: the API server must answer /readyz within
//     StartTimeout, CRDs must be established within a few seconds.
//   - Users are static token users. "admin" is in system:masters; every
//     other user named in Options.Users has no rights but those RBAC
//     objects grant it, so a test can prove a set of rules is enough.
//
// The MCS CRDs are copies of sigs.k8s.io/mcs-api's config/crd at the
// version go.mod requires; TestCRDsMatchModule keeps them equal.
package kubetest
