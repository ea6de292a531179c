package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-viper/mapstructure/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/internal/yamlpos"
)

// Limits on what ParseFile reads. Larger input is refused, not truncated.
const (
	// MaxFileBytes bounds a services file.
	MaxFileBytes = 16 << 20
	fileNodes    = 2_000_000
	fileProblems = 200
)

// fileDoc is the document a services file holds: the same list as the
// gateway configuration's services key.
type fileDoc struct {
	Services []Service `mapstructure:"services"`
}

// ParseFile reads a services file (YAML, or JSON, which is YAML too):
//
//	services:
//	  - namespace: demo
//	    name: ledger
//	    ports: [{name: http, port: 8080, protocol: http}]
//	    labels: {data: pii}
//	    endpoints: [10.0.1.7, 10.0.1.8]
//
// file names the document in problems. Every problem is reported at once
// in a *configfile.Error, each with file:line:column and the key
// (services.0.ports.1.port). A document without a services key is a
// problem, so that a file caught half-written never reads as "no
// services"; write "services: []" for none.
func ParseFile(file string, data []byte) ([]Service, error) {
	r := yamlpos.NewReader(yamlpos.Options{File: file, FoldCase: true, MaxBytes: MaxFileBytes,
		MaxNodes: fileNodes, MaxProblems: fileProblems})
	fail := func() error {
		ps := r.Problems()
		yamlpos.Sort(ps)
		return &configfile.Error{What: "services file", Problems: ps}
	}
	root, ok := r.Parse(data)
	if !ok {
		return nil, fail()
	}
	if root == nil || yamlpos.IsNull(root) {
		r.Problemf(root, "", "no services key: expected a mapping with a services list (services: [] for none)")
		return nil, fail()
	}
	if root.Kind != yaml.MappingNode {
		r.Problemf(root, "", "expected a mapping with a services list, found %s", yamlpos.Found(root))
		return nil, fail()
	}
	v, _ := r.Value(root, reflect.TypeFor[fileDoc](), "")
	if len(r.Problems()) > 0 || r.Stopped() {
		return nil, fail()
	}
	m, _ := v.(map[string]any)
	if _, ok := m["services"]; !ok {
		r.Problemf(root, "", "no services key: expected a mapping with a services list (services: [] for none)")
		return nil, fail()
	}
	var doc fileDoc
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: &doc, ErrorUnused: true})
	if err != nil {
		return nil, fmt.Errorf("services file %s: %w", file, err)
	}
	if err := dec.Decode(m); err != nil {
		r.Problemf(root, "", "cannot decode: %v", err)
		return nil, fail()
	}
	if err := Validate("services.", doc.Services); err != nil {
		for _, fe := range fieldErrors(err) {
			n, _ := r.At(fe.Key)
			r.Problemf(n, fe.Key, "%s", fe.Msg)
		}
		return nil, fail()
	}
	if doc.Services == nil {
		doc.Services = []Service{}
	}
	return doc.Services, nil
}

// fieldErrors flattens what Validate returned.
func fieldErrors(err error) []*configfile.FieldError {
	var out []*configfile.FieldError
	var walk func(error)
	walk = func(err error) {
		var fe *configfile.FieldError
		switch e := err.(type) {
		case *configfile.FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			if errors.As(err, &fe) {
				out = append(out, fe)
			} else {
				out = append(out, &configfile.FieldError{Msg: err.Error()})
			}
		}
	}
	walk(err)
	return out
}

// FileOptions are the dependencies of a File source. Every field is
// optional.
type FileOptions struct {
	// Logger receives reload failures. Default slog.Default().
	Logger *slog.Logger
	// Registry receives strait_discovery_file_* metrics. Default none.
	Registry prometheus.Registerer
	// Debounce is how long the directory must be quiet before the file is
	// read again. Default 100ms.
	Debounce time.Duration
}

// File is a Source that reads a services file (ParseFile) and reads it
// again whenever its directory changes: edits, renames, and Kubernetes
// ConfigMap symlink swaps. A change that does not parse is logged and
// counted, and the last good list stays.
type File struct {
	path     string
	log      *slog.Logger
	reg      prometheus.Registerer
	debounce time.Duration
	cur      atomic.Pointer[[]Service]
	last     []byte // content of the last good read; owned by the watcher
	changes  chan struct{}
	reloads  *prometheus.CounterVec
	valid    prometheus.Gauge

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewFile reads path and starts watching it until Close. A file that is
// missing or does not parse is an error naming it.
func NewFile(path string, opts FileOptions) (*File, error) {
	f := &File{path: path, log: opts.Logger, reg: opts.Registry, debounce: opts.Debounce, changes: make(chan struct{}, 1)}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.debounce <= 0 {
		f.debounce = 100 * time.Millisecond
	}
	data, svcs, err := f.read()
	if err != nil {
		return nil, err
	}
	f.last = data
	f.cur.Store(&svcs)
	f.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_discovery_file_reloads_total",
		Help: "Reads of the services file after it changed, by result (ok, invalid)."}, []string{"result"})
	f.valid = prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_discovery_file_valid",
		Help: "1 when the services file as it is now was read, 0 while it does not parse and the last good list is served."})
	f.valid.Set(1)
	if f.reg != nil {
		for _, c := range []prometheus.Collector{f.reloads, f.valid} {
			if err := f.reg.Register(c); err != nil {
				f.unregister()
				return nil, fmt.Errorf("services file %s: register metrics: %w", path, err)
			}
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		f.unregister()
		return nil, fmt.Errorf("watch services file %s: %w", path, err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		f.unregister()
		return nil, fmt.Errorf("watch services file %s: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(1)
	go f.watch(ctx, w)
	return f, nil
}

func (f *File) read() ([]byte, []Service, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, nil, fmt.Errorf("read services file: %w", err)
	}
	svcs, err := ParseFile(f.path, data)
	if err != nil {
		return nil, nil, err
	}
	return data, svcs, nil
}

// Services implements Source.
func (f *File) Services() []Service { return *f.cur.Load() }

// Changes implements Source.
func (f *File) Changes() <-chan struct{} { return f.changes }

// Close stops watching and waits for the watcher to end.
func (f *File) Close() {
	f.cancel()
	f.wg.Wait()
	f.unregister()
}

func (f *File) unregister() {
	if f.reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{f.reloads, f.valid} {
		if c != nil {
			f.reg.Unregister(c)
		}
	}
}

func (f *File) watch(ctx context.Context, w *fsnotify.Watcher) {
	defer f.wg.Done()
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(f.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			f.log.Warn("watching services file", "file", f.path, "err", err)
		case <-timer.C:
			f.reload()
		}
	}
}

// reload reads the file again: an unchanged file is a no-op, a valid
// changed one is published, an invalid one is logged and counted and the
// last good list stays.
func (f *File) reload() {
	data, svcs, err := f.read()
	if err != nil {
		f.reloads.WithLabelValues("invalid").Inc()
		f.valid.Set(0)
		f.log.Error("services file not read; the last good list stays", "file", f.path,
			"services", len(f.Services()), "err", err)
		return
	}
	f.valid.Set(1)
	if bytes.Equal(data, f.last) {
		return
	}
	f.last = data
	f.reloads.WithLabelValues("ok").Inc()
	f.cur.Store(&svcs)
	select {
	case f.changes <- struct{}{}:
	default:
	}
	f.log.Info("services file read", "file", f.path, "services", len(svcs))
}
