package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions/apis/v1alpha1"

	"github.com/straitmesh/strait/discovery"
)

// Options are a Source's dependencies. Every field is optional.
type Options struct {
	// Logger receives the source's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives strait_discovery_kube_* metrics. Default none.
	Registry prometheus.Registerer
	// RestConfig reaches the API server instead of Config.Kubeconfig or
	// the in-cluster configuration (tests).
	RestConfig *rest.Config
	// Debounce is how long the API must be quiet before a change is
	// published. Default 100ms.
	Debounce time.Duration
	// MaxDelay bounds how long a change waits for quiet: a steady stream
	// of changes is published at least this often. Default 500ms.
	MaxDelay time.Duration
}

// Import is a service this gateway imports, for which it keeps a
// ServiceImport in the service's namespace.
type Import struct {
	Namespace, Name string
	Ports           []ImportPort
}

// ImportPort is one port of an imported service.
type ImportPort struct {
	Port int
	// Protocol is discovery.Port.Protocol; "" is tcp.
	Protocol string
}

// Key returns "namespace/name".
func (im Import) Key() string { return im.Namespace + "/" + im.Name }

// Source is a discovery.Source over the Kubernetes API (see the package
// documentation).
type Source struct {
	cfg      Config
	log      *slog.Logger
	reg      prometheus.Registerer
	debounce time.Duration
	maxDelay time.Duration
	core     kubernetes.Interface
	mcs      mcsclient.Interface
	scopes   []*scope
	m        *metrics

	cur     atomic.Pointer[[]discovery.Service]
	changes chan struct{}
	kick    chan struct{}
	queue   workqueue.TypedRateLimitingInterface[string]

	// reachable is whether the API server answered the last request.
	reachable atomic.Bool

	mu         sync.Mutex
	downSince  time.Time
	remote     map[string][]discovery.ClusterPorts
	imports    []Import
	wantStatus map[string][]metav1.Condition
	// wantImport holds the ServiceImport to keep for a key; nil: delete
	// the owned one.
	wantImport map[string]*mcsv1a1.ServiceImport

	// Owned by the rebuild loop.
	reported map[string]string    // export -> problems last logged
	skipped  map[string]bool      // imports outside the watched namespaces, logged
	foreign  map[string]time.Time // ServiceImports of another owner, by when seen

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// scope is the informers of one namespace, or of all ("").
type scope struct {
	ns                       string
	svc, slice, export, impt cache.SharedIndexInformer
}

const bySliceService = "service"

// New makes a Source; nothing is read until Start.
func New(cfg Config, opts Options) (*Source, error) {
	s := &Source{cfg: cfg, log: opts.Logger, reg: opts.Registry, debounce: opts.Debounce, maxDelay: opts.MaxDelay,
		changes: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		remote: map[string][]discovery.ClusterPorts{}, wantStatus: map[string][]metav1.Condition{},
		wantImport: map[string]*mcsv1a1.ServiceImport{}, reported: map[string]string{}, skipped: map[string]bool{},
		foreign: map[string]time.Time{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.debounce <= 0 {
		s.debounce = 100 * time.Millisecond
	}
	if s.maxDelay <= 0 {
		s.maxDelay = 500 * time.Millisecond
	}
	if s.cfg.SyncTimeout <= 0 {
		s.cfg.SyncTimeout = DefaultConfig().SyncTimeout
	}
	empty := []discovery.Service{}
	s.cur.Store(&empty)
	s.reachable.Store(true)

	rc := opts.RestConfig
	if rc == nil {
		var err error
		if cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
			if err != nil {
				return nil, fmt.Errorf("kubernetes discovery: kubeconfig %s: %w", cfg.Kubeconfig, err)
			}
		} else if rc, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes discovery: in-cluster configuration (set discovery.kubernetes.kubeconfig outside a pod): %w", err)
		}
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "strait-gateway"
	}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return observer{rt: rt, s: s} })
	var err error
	if s.core, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("kubernetes discovery: client: %w", err)
	}
	if s.mcs, err = mcsclient.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("kubernetes discovery: MCS client: %w", err)
	}
	nss := cfg.Namespaces
	if len(nss) == 0 {
		nss = []string{metav1.NamespaceAll}
	}
	for _, ns := range nss {
		s.scopes = append(s.scopes, &scope{ns: ns})
	}
	s.m = newMetrics()
	return s, nil
}

// Start checks discovery's permissions, starts the informers, waits
// (Config.SyncTimeout at most) until each has listed its resource, and
// publishes the first service list: Services is complete when Start
// returns. Close stops what Start started, also after an error.
func (s *Source) Start(ctx context.Context) error {
	if s.started {
		return errors.New("kubernetes discovery: already started")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "strait-discovery"})
	if s.reg != nil {
		if err := s.m.register(s.reg); err != nil {
			return fmt.Errorf("kubernetes discovery: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	if err := s.checkAccess(sctx); err != nil {
		return err
	}
	var syncs []struct {
		name string
		inf  cache.SharedIndexInformer
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	for _, sc := range s.scopes {
		sc.svc = coreinformers.NewFilteredServiceInformer(s.core, sc.ns, 0, cache.Indexers{}, nil)
		sc.slice = discoveryinformers.NewFilteredEndpointSliceInformer(s.core, sc.ns, 0, cache.Indexers{bySliceService: sliceService}, nil)
		sc.export = mcsinformers.NewFilteredServiceExportInformer(s.mcs, sc.ns, 0, cache.Indexers{}, nil)
		sc.impt = mcsinformers.NewFilteredServiceImportInformer(s.mcs, sc.ns, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = ManagedByLabel + "=" + ManagedBy })
		for _, in := range []struct {
			name string
			inf  cache.SharedIndexInformer
		}{{"services", sc.svc}, {"endpointslices", sc.slice}, {"serviceexports", sc.export}, {"serviceimports", sc.impt}} {
			if _, err := in.inf.AddEventHandler(handler); err != nil {
				return fmt.Errorf("kubernetes discovery: %s handler: %w", in.name, err)
			}
			if err := in.inf.SetWatchErrorHandlerWithContext(s.watchError(in.name)); err != nil {
				return fmt.Errorf("kubernetes discovery: %s: %w", in.name, err)
			}
			name := in.name
			if sc.ns != "" {
				name += " in namespace " + sc.ns
			}
			syncs = append(syncs, struct {
				name string
				inf  cache.SharedIndexInformer
			}{name, in.inf})
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				in.inf.RunWithContext(s.ctx)
			}()
		}
	}
	for {
		var pending []string
		for _, sy := range syncs {
			if !sy.inf.HasSynced() {
				pending = append(pending, sy.name)
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-sctx.Done():
			return fmt.Errorf("kubernetes discovery: first list of %s not done within %s: %w", strings.Join(pending, ", "), s.cfg.SyncTimeout, sctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.rebuild()
	s.wg.Add(2)
	go s.loop()
	go s.work()
	s.log.Info("kubernetes discovery started", "namespaces", strings.Join(s.cfg.Namespaces, ","), "services", len(s.Services()))
	return nil
}

// Close stops the informers and writers and waits for them.
func (s *Source) Close() {
	if !s.started {
		return
	}
	s.cancel()
	s.queue.ShutDown()
	s.wg.Wait()
	if s.reg != nil {
		s.m.unregister(s.reg)
	}
}

// Services implements discovery.Source: every exported service, sorted
// by namespace/name. It is the last good list while the API server is
// away.
func (s *Source) Services() []discovery.Service { return *s.cur.Load() }

// Changes implements discovery.Source.
func (s *Source) Changes() <-chan struct{} { return s.changes }

// ObservePorts implements discovery.PortsObserver: how other clusters
// declare the ports of services this cluster exports, for the Conflict
// condition.
func (s *Source) ObservePorts(remote map[string][]discovery.ClusterPorts) {
	cp := make(map[string][]discovery.ClusterPorts, len(remote))
	for k, v := range remote {
		cp[k] = slices.Clone(v)
	}
	s.mu.Lock()
	same := reflect.DeepEqual(s.remote, cp)
	s.remote = cp
	s.mu.Unlock()
	if !same {
		s.poke()
	}
}

// SetImports sets the services this gateway imports: it keeps a
// ServiceImport (type ClusterSetIP, the imports' ports, labelled
// ManagedByLabel=ManagedBy) for each, in the service's namespace when
// discovery watches it, and deletes the ones it owns that are no longer
// imported.
func (s *Source) SetImports(imports []Import) {
	cp := slices.Clone(imports)
	s.mu.Lock()
	s.imports = cp
	s.mu.Unlock()
	s.poke()
}

// poke asks the loop for a rebuild.
func (s *Source) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop rebuilds after changes: once the API has been quiet for debounce,
// or maxDelay after the first change at the latest.
func (s *Source) loop() {
	defer s.wg.Done()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var latest *time.Timer
	var deadline <-chan time.Time
	fire := func() {
		quiet.Stop()
		if latest != nil {
			latest.Stop()
			latest, deadline = nil, nil
		}
		s.rebuild()
	}
	for {
		select {
		case <-s.ctx.Done():
			if latest != nil {
				latest.Stop()
			}
			return
		case <-s.kick:
			quiet.Reset(s.debounce)
			if latest == nil {
				latest = time.NewTimer(s.maxDelay)
				deadline = latest.C
			}
		case <-quiet.C:
			fire()
		case <-deadline:
			fire()
		}
	}
}

func sliceService(obj any) ([]string, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := sl.Labels[serviceNameLabel]
	if name == "" {
		return nil, nil
	}
	return []string{sl.Namespace + "/" + name}, nil
}

// scopeFor returns the scope that holds namespace ns, or nil.
func (s *Source) scopeFor(ns string) *scope {
	for _, sc := range s.scopes {
		if sc.ns == "" || sc.ns == ns {
			return sc
		}
	}
	return nil
}

// rebuild recomputes the service list from the informers' caches (which
// outlive an API server outage), publishes it when it changed, and queues
// the status and ServiceImport writes that would bring the API in step.
func (s *Source) rebuild() {
	s.mu.Lock()
	remote, imports := s.remote, s.imports
	s.mu.Unlock()

	type resolved struct {
		st   exportState
		have []metav1.Condition
	}
	var all []resolved
	for _, sc := range s.scopes {
		for _, o := range sc.export.GetStore().List() {
			se, ok := o.(*mcsv1a1.ServiceExport)
			if !ok {
				continue
			}
			key := se.Namespace + "/" + se.Name
			var svc *corev1.Service
			if o, ok, _ := sc.svc.GetStore().GetByKey(key); ok {
				svc, _ = o.(*corev1.Service)
			}
			objs, _ := sc.slice.GetIndexer().ByIndex(bySliceService, key)
			sls := make([]*discoveryv1.EndpointSlice, 0, len(objs))
			for _, o := range objs {
				if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
					sls = append(sls, sl)
				}
			}
			all = append(all, resolved{resolve(se, svc, sls, remote[key]), se.Status.Conditions})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].st.key < all[j].st.key })

	svcs := []discovery.Service{}
	problems := map[string]float64{}
	seen := map[string]bool{}
	for _, r := range all {
		seen[r.st.key] = true
		if r.st.svc != nil {
			svcs = append(svcs, *r.st.svc)
		}
		for _, p := range r.st.problems {
			problems[p]++
		}
		s.report(r.st)
	}
	for k := range s.reported {
		if !seen[k] {
			delete(s.reported, k)
		}
	}
	s.m.services.Set(float64(len(svcs)))
	s.m.problems.Reset()
	for p, n := range problems {
		s.m.problems.WithLabelValues(p).Set(n)
	}
	if !reflect.DeepEqual(svcs, *s.cur.Load()) {
		s.cur.Store(&svcs)
		s.m.updates.Inc()
		select {
		case s.changes <- struct{}{}:
		default:
		}
	}

	var queue []string
	s.mu.Lock()
	for k := range s.wantStatus {
		if !seen[k] {
			delete(s.wantStatus, k)
		}
	}
	for _, r := range all {
		if statusDiffers(r.have, r.st.conds) {
			s.wantStatus[r.st.key] = r.st.conds
			queue = append(queue, "export/"+r.st.key)
		} else {
			delete(s.wantStatus, r.st.key)
		}
	}
	want := map[string]*mcsv1a1.ServiceImport{}
	for _, im := range imports {
		if s.scopeFor(im.Namespace) == nil {
			if !s.skipped[im.Key()] {
				s.skipped[im.Key()] = true
				s.log.Warn("no ServiceImport for an import outside discovery.kubernetes.namespaces", "service", im.Key())
			}
			continue
		}
		want[im.Key()] = serviceImport(im)
	}
	now := time.Now()
	for k, obj := range want {
		if at, ok := s.foreign[k]; ok && now.Sub(at) < foreignRetry {
			continue
		}
		o, exists, _ := s.scopeFor(obj.Namespace).impt.GetStore().GetByKey(k)
		if cur, _ := o.(*mcsv1a1.ServiceImport); !exists || cur == nil || !importMatches(cur, obj) {
			s.wantImport[k] = obj
			queue = append(queue, "import/"+k)
		} else {
			delete(s.wantImport, k)
		}
	}
	for _, sc := range s.scopes {
		for _, o := range sc.impt.GetStore().List() {
			si, ok := o.(*mcsv1a1.ServiceImport)
			if !ok || si.Labels[ManagedByLabel] != ManagedBy {
				continue
			}
			k := si.Namespace + "/" + si.Name
			if _, ok := want[k]; !ok {
				s.wantImport[k] = nil
				queue = append(queue, "import/"+k)
			}
		}
	}
	s.mu.Unlock()
	for _, k := range queue {
		s.queue.Add(k)
	}
}

// foreignRetry is how long a ServiceImport of another owner is left
// alone before the gateway looks again whether it is gone.
const foreignRetry = time.Minute

// report logs an export's problems when they change: one line when a
// problem appears, one when it is gone.
func (s *Source) report(st exportState) {
	p := strings.Join(st.problems, ",")
	if s.reported[st.key] == p {
		return
	}
	prev, known := s.reported[st.key]
	s.reported[st.key] = p
	msg := ""
	if len(st.conds) > 0 {
		msg = st.conds[0].Message
	}
	switch {
	case p != "" && st.svc == nil:
		s.log.Warn("service export refused", "service", st.key, "reason", p, "message", msg)
	case p != "":
		conflict := ""
		if len(st.conds) > 1 && st.conds[1].Status == metav1.ConditionTrue {
			conflict = st.conds[1].Message
		}
		s.log.Warn("service exported with a problem", "service", st.key, "reason", p, "message", msg, "conflict", conflict)
	case known && prev != "":
		s.log.Info("service export problem resolved", "service", st.key, "was", prev)
	}
}

// serviceImport is the ServiceImport kept for an import.
func serviceImport(im Import) *mcsv1a1.ServiceImport {
	ports := slices.Clone(im.Ports)
	sort.Slice(ports, func(i, j int) bool { return ports[i].Port < ports[j].Port })
	si := &mcsv1a1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: im.Namespace, Name: im.Name, Labels: map[string]string{ManagedByLabel: ManagedBy}},
		Spec:       mcsv1a1.ServiceImportSpec{Type: mcsv1a1.ClusterSetIP, Ports: []mcsv1a1.ServicePort{}},
	}
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		si.Spec.Ports = append(si.Spec.Ports, mcsv1a1.ServicePort{Name: fmt.Sprintf("%s-%d", proto, p.Port),
			Protocol: corev1.ProtocolTCP, AppProtocol: appProtocol(proto), Port: int32(p.Port)})
	}
	return si
}

// importMatches reports whether the owned ServiceImport have already says
// what want does.
func importMatches(have, want *mcsv1a1.ServiceImport) bool {
	if have.Labels[ManagedByLabel] != ManagedBy || have.Spec.Type != want.Spec.Type || len(have.Spec.Ports) != len(want.Spec.Ports) {
		return false
	}
	for i, p := range have.Spec.Ports {
		w := want.Spec.Ports[i]
		if p.Name != w.Name || p.Protocol != w.Protocol || p.Port != w.Port || !reflect.DeepEqual(p.AppProtocol, w.AppProtocol) {
			return false
		}
	}
	return true
}
