// Command prebuild builds the kube-apiserver that internal/kubetest
// starts, into the cache the tests read it from, so that `make test`
// spends the cold build outside any test's timeout.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/straitmesh/strait/internal/kubetest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	bin, err := kubetest.Build(ctx, log.Printf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bin)
}
