// Command apiserver is kube-apiserver, built from the k8s.io/kubernetes
// module at the version go.mod names, for tests that need a real API
// server (internal/kubetest builds and starts it).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
