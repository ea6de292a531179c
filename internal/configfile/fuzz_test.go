package configfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/straitmesh/strait/internal/fuzzseed"
)

// FuzzLoad feeds arbitrary files to Load: it must never panic, and every
// failure must be an *Error whose problems render.
func FuzzLoad(f *testing.F) {
	fuzzseed.Files(f, "testdata/seed/*.yaml")
	f.Add([]byte(validYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "gw.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := defaultConfig()
		err := Load(Options{File: file, EnvPrefix: "STRAIT_FUZZ_UNSET"}, &cfg)
		if err == nil {
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Fatalf("Load returned %T with no problems: %v", err, err)
		}
		_ = ce.Error()
	})
}
