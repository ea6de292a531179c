// Command strait runs and operates Strait federation gateways.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/sovereignty"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	err := newRoot().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "strait:", err)
	var cfgErr *configfile.Error
	if errors.As(err, &cfgErr) {
		os.Exit(2)
	}
	var polErr *sovereignty.Error
	if errors.As(err, &polErr) {
		os.Exit(2)
	}
	var usage *usageError
	if errors.As(err, &usage) {
		os.Exit(2)
	}
	os.Exit(1)
}

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
