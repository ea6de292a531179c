package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

// work writes what rebuild queued, one key at a time; a failed write is
// retried with backoff (200ms doubling to 30s), so an API server that is
// away is not hammered.
func (s *Source) work() {
	defer s.wg.Done()
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		if err := s.sync(key); err != nil {
			s.log.Debug("kubernetes write failed; retrying", "key", key, "err", err)
			s.queue.AddRateLimited(key)
		} else {
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

func (s *Source) sync(key string) error {
	kind, nsname, _ := strings.Cut(key, "/")
	ns, name, _ := strings.Cut(nsname, "/")
	sc := s.scopeFor(ns)
	if sc == nil {
		return nil
	}
	switch kind {
	case "export":
		return s.syncStatus(sc, ns, name)
	case "import":
		return s.syncImport(sc, ns, name)
	}
	return nil
}

// syncStatus brings a ServiceExport's conditions to what rebuild wants.
func (s *Source) syncStatus(sc *scope, ns, name string) error {
	key := ns + "/" + name
	s.mu.Lock()
	want, ok := s.wantStatus[key]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	o, exists, _ := sc.export.GetStore().GetByKey(key)
	se, _ := o.(*mcsv1a1.ServiceExport)
	if !exists || se == nil || !statusDiffers(se.Status.Conditions, want) {
		return nil
	}
	cp := se.DeepCopy()
	cp.Status.Conditions = applyStatus(cp.Status.Conditions, want)
	_, err := s.mcs.MulticlusterV1alpha1().ServiceExports(ns).UpdateStatus(s.ctx, cp, metav1.UpdateOptions{FieldManager: ManagedBy})
	if apierrors.IsNotFound(err) {
		return nil
	}
	s.wrote("serviceexports/status", err)
	if err != nil {
		return fmt.Errorf("update status of ServiceExport %s: %w", key, err)
	}
	return nil
}

// syncImport creates, updates or deletes the owned ServiceImport of key.
func (s *Source) syncImport(sc *scope, ns, name string) error {
	key := ns + "/" + name
	s.mu.Lock()
	want, ok := s.wantImport[key]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	client := s.mcs.MulticlusterV1alpha1().ServiceImports(ns)
	o, exists, _ := sc.impt.GetStore().GetByKey(key)
	cur, _ := o.(*mcsv1a1.ServiceImport)
	switch {
	case want == nil:
		if !exists || cur == nil {
			return nil
		}
		err := client.Delete(s.ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or replaced by another owner's
		}
		s.wrote("serviceimports", err)
		if err != nil {
			return fmt.Errorf("delete ServiceImport %s: %w", key, err)
		}
		s.log.Info("ServiceImport deleted", "service", key)
		return nil
	case !exists || cur == nil:
		_, err := client.Create(s.ctx, want.DeepCopy(), metav1.CreateOptions{FieldManager: ManagedBy})
		if apierrors.IsAlreadyExists(err) {
			got, gerr := client.Get(s.ctx, name, metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("get ServiceImport %s: %w", key, gerr)
			}
			if got.Labels[ManagedByLabel] != ManagedBy {
				s.mu.Lock()
				s.foreign[key] = time.Now()
				s.mu.Unlock()
				s.m.writes.WithLabelValues("serviceimports", "foreign").Inc()
				s.log.Warn("ServiceImport of another owner left alone", "service", key, "owner", got.Labels[ManagedByLabel])
				return nil
			}
			return fmt.Errorf("create ServiceImport %s: not yet in the cache: %w", key, err)
		}
		s.wrote("serviceimports", err)
		if err != nil {
			return fmt.Errorf("create ServiceImport %s: %w", key, err)
		}
		s.log.Info("ServiceImport created", "service", key, "ports", len(want.Spec.Ports))
		return nil
	default:
		if importMatches(cur, want) {
			return nil
		}
		cp := cur.DeepCopy()
		cp.Spec.Type, cp.Spec.Ports = want.Spec.Type, want.Spec.Ports
		if cp.Labels == nil {
			cp.Labels = map[string]string{}
		}
		cp.Labels[ManagedByLabel] = ManagedBy
		_, err := client.Update(s.ctx, cp, metav1.UpdateOptions{FieldManager: ManagedBy})
		if apierrors.IsNotFound(err) {
			return errors.New("update ServiceImport " + key + ": deleted meanwhile")
		}
		s.wrote("serviceimports", err)
		if err != nil {
			return fmt.Errorf("update ServiceImport %s: %w", key, err)
		}
		s.log.Info("ServiceImport updated", "service", key, "ports", len(want.Spec.Ports))
		return nil
	}
}

func (s *Source) wrote(resource string, err error) {
	result := "ok"
	switch {
	case apierrors.IsConflict(err):
		result = "conflict"
	case apierrors.IsForbidden(err):
		result = "forbidden"
		s.log.Error("kubernetes write forbidden; check the RBAC of discovery (docs/kubernetes.md)", "resource", resource, "err", err)
	case err != nil:
		result = "error"
	}
	s.m.writes.WithLabelValues(resource, result).Inc()
}

// watchError counts an informer's failed list or watch. An outage is
// reported through reachability (observer); a refusal is logged, as it
// means the RBAC changed under a running gateway.
func (s *Source) watchError(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || ctx.Err() != nil {
			return // a watch ending as watches do
		}
		s.m.watchErrors.WithLabelValues(resource).Inc()
		if apierrors.IsForbidden(err) {
			s.log.Error("kubernetes watch forbidden; the last good service list stays", "resource", resource, "err", err)
			return
		}
		s.log.Debug("kubernetes watch failed", "resource", resource, "err", err)
	}
}

// observer sees every request discovery makes: a request that gets no
// answer, or a 5xx, marks the API server unreachable; any other answer
// marks it reachable. Transitions are logged and kept in
// strait_discovery_kube_api_reachable; the informers' caches, and so
// Services, keep the last good state in between.
type observer struct {
	rt http.RoundTripper
	s  *Source
}

// WrappedRoundTripper lets client-go reach the transport beneath, to
// cancel requests and close idle connections.
func (o observer) WrappedRoundTripper() http.RoundTripper { return o.rt }

func (o observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(req)
	switch {
	case err != nil:
		if req.Context().Err() == nil && (o.s.ctx == nil || o.s.ctx.Err() == nil) {
			o.s.unreachable(err)
		}
	case resp.StatusCode >= 500:
		o.s.unreachable(fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
	default:
		o.s.answered()
	}
	return resp, err
}

func (s *Source) unreachable(err error) {
	s.m.apiErrors.Inc()
	if !s.reachable.CompareAndSwap(true, false) {
		return
	}
	s.mu.Lock()
	s.downSince = time.Now()
	s.mu.Unlock()
	// The log line first: whoever sees the gauge fall finds it.
	s.log.Warn("kubernetes API server unreachable; serving the last good service list", "services", len(s.Services()), "err", err)
	s.m.reachable.Set(0)
}

func (s *Source) answered() {
	if !s.reachable.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	down := time.Since(s.downSince)
	s.mu.Unlock()
	s.log.Info("kubernetes API server reachable again; discovery follows it", "down", down.Round(time.Millisecond))
	s.m.reachable.Set(1)
}
