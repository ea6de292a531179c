// Package fuzzseed gives fuzz targets their seed corpus from files in
// testdata, where people can read and extend it.
package fuzzseed

import (
	"os"
	"path/filepath"
	"testing"
)

// Files adds the content of every file matching pattern to f's corpus. A
// pattern that matches nothing fails f: a target without seeds starts
// from nothing.
func Files(f *testing.F, pattern string) {
	f.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil || len(paths) == 0 {
		f.Fatalf("seed files %s: %d found, %v", pattern, len(paths), err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}
