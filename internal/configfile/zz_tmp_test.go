package configfile

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestZZMutate(t *testing.T) {
	seeds, _ := filepath.Glob("testdata/seed/*.yaml")
	var inputs [][]byte
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		inputs = append(inputs, b)
	}
	inputs = append(inputs, []byte(validYAML), []byte(laughs()))
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	f := filepath.Join(t.TempDir(), "gw.yaml")
	var worst time.Duration
	var worstIn []byte
	start := time.Now()
	n := 0
	const special = "{}[]:-&*<,\n #\"'!|>?"
	for time.Since(start) < 20*time.Second {
		in := append([]byte(nil), inputs[r.Intn(len(inputs))]...)
		for k := r.Intn(6); k >= 0 && len(in) > 0; k-- {
			i := r.Intn(len(in))
			switch r.Intn(4) {
			case 0:
				in[i] = special[r.Intn(len(special))]
			case 1:
				in = append(in[:i], in[i+1:]...)
			case 2, 3:
				j := r.Intn(len(in))
				in = append(in[:i], append(append([]byte(nil), in[j:min(len(in), j+1+r.Intn(16))]...), in[i:]...)...)
			}
		}
		os.WriteFile(f, in, 0o600)
		cfg := defaultConfig()
		s := time.Now()
		Load(Options{File: f}, &cfg)
		if d := time.Since(s); d > worst {
			worst, worstIn = d, in
		}
		n++
	}
	t.Logf("%d execs, worst %v for %q", n, worst, worstIn)
}
