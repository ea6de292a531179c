package kube

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/straitmesh/strait/discovery"
)

// exportState is what one ServiceExport resolves to: the service it
// exports (nil when none) and the conditions it should carry.
type exportState struct {
	key string // namespace/name
	svc *discovery.Service
	// conds are the Valid and, for a valid export, Conflict conditions
	// (LastTransitionTime unset: SetStatusCondition keeps or sets it).
	conds []metav1.Condition
	// problems are the reasons this export is counted under in
	// strait_discovery_kube_export_problems; empty when none.
	problems []string
}

// resolve decides what a ServiceExport exports, from the Service of the
// same name (nil when missing), that Service's EndpointSlices, and how
// other clusters declare the service's ports. It is pure: the same
// objects give the same answer.
func resolve(se *mcsv1a1.ServiceExport, svc *corev1.Service, sls []*discoveryv1.EndpointSlice, remote []discovery.ClusterPorts) exportState {
	st := exportState{key: se.Namespace + "/" + se.Name}
	invalid := func(reason, format string, args ...any) exportState {
		st.conds = []metav1.Condition{{Type: string(mcsv1a1.ServiceExportConditionValid), Status: metav1.ConditionFalse,
			Reason: reason, Message: fmt.Sprintf(format, args...), ObservedGeneration: se.Generation}}
		st.problems = []string{reason}
		return st
	}
	if svc == nil {
		return invalid(string(mcsv1a1.ServiceExportReasonNoService), "Service %s does not exist", st.key)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return invalid(string(mcsv1a1.ServiceExportReasonInvalidServiceType), "Service %s is of type ExternalName, which cannot be exported", st.key)
	}
	labels, err := parseLabels(se.Annotations[LabelsAnnotation])
	if err != nil {
		return invalid(ReasonInvalidLabels, "annotation %s: %v; the service is not exported until its residency labels can be read", LabelsAnnotation, err)
	}
	var tcp []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
			tcp = append(tcp, p)
		}
	}
	if len(tcp) == 0 {
		return invalid(ReasonNoTCPPorts, "Service %s has no TCP port", st.key)
	}
	if len(tcp) > MaxPorts {
		return invalid(ReasonTooManyPorts, "Service %s has %d TCP ports; at most %d can be exported", st.key, len(tcp), MaxPorts)
	}

	out := &discovery.Service{Namespace: se.Namespace, Name: se.Name, Labels: labels, Endpoints: []string{}}
	targets, eps, zones := endpoints(tcp, sls)
	for i, p := range tcp {
		out.Ports = append(out.Ports, discovery.Port{Name: p.Name, Port: int(p.Port), TargetPort: targets[i], Protocol: Protocol(p.AppProtocol)})
	}
	out.Endpoints = eps
	if len(zones) > 0 {
		out.Zones = zones
	}
	st.svc = out

	msg := "Service " + st.key + " is exported"
	if len(svc.Spec.Selector) == 0 {
		msg += "; it has no selector, so its endpoints are the EndpointSlices labelled " + serviceNameLabel + "=" + se.Name
		st.problems = append(st.problems, problemNoSelector)
	}
	st.conds = []metav1.Condition{
		{Type: string(mcsv1a1.ServiceExportConditionValid), Status: metav1.ConditionTrue,
			Reason: string(mcsv1a1.ServiceExportReasonValid), Message: msg, ObservedGeneration: se.Generation},
		conflict(out.Ports, remote, se.Generation),
	}
	if st.conds[1].Status == metav1.ConditionTrue {
		st.problems = append(st.problems, string(mcsv1a1.ServiceExportReasonPortConflict))
	}
	return st
}

// conflict compares this cluster's ports of a service with other
// clusters'. The MCS API calls it a port conflict when the ports are not
// identical in every constituent Service; Strait does not merge them
// (each cluster's ports stay its own in the catalog), it reports them.
func conflict(local []discovery.Port, remote []discovery.ClusterPorts, gen int64) metav1.Condition {
	mine := portSet(local)
	var differ []string
	for _, r := range remote {
		if theirs := portSet(r.Ports); theirs != mine {
			differ = append(differ, fmt.Sprintf("%s declares [%s]", r.Cluster, theirs))
		}
	}
	c := metav1.Condition{Type: string(mcsv1a1.ServiceExportConditionConflict), ObservedGeneration: gen}
	switch {
	case len(differ) > 0:
		slices.Sort(differ)
		c.Status, c.Reason = metav1.ConditionTrue, string(mcsv1a1.ServiceExportReasonPortConflict)
		c.Message = fmt.Sprintf("ports differ across clusters: this cluster declares [%s], %s; each cluster is reached on the ports it declares",
			mine, strings.Join(differ, ", "))
	case len(remote) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, string(mcsv1a1.ServiceExportReasonNoConflicts)
		c.Message = fmt.Sprintf("ports agree with the %d other exporting cluster(s)", len(remote))
	default:
		c.Status, c.Reason = metav1.ConditionFalse, string(mcsv1a1.ServiceExportReasonNoConflicts)
		c.Message = "no other cluster exports this service"
	}
	return c
}

// portSet renders ports as a canonical sorted list: "80/http(web) 443/tcp".
func portSet(ports []discovery.Port) string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		s := strconv.Itoa(p.Port) + "/" + proto
		if p.Name != "" {
			s += "(" + p.Name + ")"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// Protocol maps a Service port's appProtocol to discovery.Port.Protocol:
// http, http2 (also h2c and kubernetes.io/h2c) and grpc; anything else,
// or none, is tcp.
func Protocol(app *string) string {
	if app == nil {
		return "tcp"
	}
	switch strings.ToLower(*app) {
	case "http":
		return "http"
	case "http2", "h2c", "kubernetes.io/h2c":
		return "http2"
	case "grpc":
		return "grpc"
	}
	return "tcp"
}

// appProtocol is Protocol's inverse for the ports of a ServiceImport.
func appProtocol(proto string) *string {
	var s string
	switch proto {
	case "http", "grpc":
		s = proto
	case "http2":
		s = "kubernetes.io/h2c"
	default:
		return nil
	}
	return &s
}

// parseLabels reads LabelsAnnotation's value: key=value pairs separated
// by commas, keys and values with Kubernetes label syntax.
func parseLabels(v string) (map[string]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		k, val, ok := strings.Cut(kv, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if !ok || k == "" {
			return nil, fmt.Errorf("want key=value pairs separated by commas, found %q", kv)
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(val); len(msgs) > 0 {
			return nil, fmt.Errorf("label %s value %q: %s", k, val, msgs[0])
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %s given twice", k)
		}
		out[k] = val
	}
	if len(out) > maxLabels {
		return nil, fmt.Errorf("%d labels; at most %d", len(out), maxLabels)
	}
	return out, nil
}

// endpoints picks a service's endpoints from its EndpointSlices and the
// port each serves every service port on.
//
// An endpoint is taken when it is ready; when no endpoint is ready, the
// serving endpoints that are terminating are taken instead (as kube-proxy
// does), so that a service whose pods are all shutting down still drains.
// Only the first address of an endpoint is used (the API makes them
// fungible). A discovery.Service serves each port on one target port for
// every endpoint, so when slices map a port name to different numbers
// (pods with different container ports), the mapping with the most
// endpoints wins and the others' endpoints are left out.
func endpoints(ports []corev1.ServicePort, sls []*discoveryv1.EndpointSlice) (targets []int, eps []string, zones map[string]string) {
	type group struct {
		targets   []int
		ready     map[string]string // address -> zone
		fallback  map[string]string
		firstName string
	}
	groups := map[string]*group{}
	for _, sl := range sls {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 && sl.AddressType != discoveryv1.AddressTypeFQDN {
			continue
		}
		tg, ok := sliceTargets(ports, sl)
		if !ok {
			continue
		}
		sig := fmt.Sprint(tg)
		g := groups[sig]
		if g == nil {
			g = &group{targets: tg, ready: map[string]string{}, fallback: map[string]string{}, firstName: sl.Name}
			groups[sig] = g
		}
		if sl.Name < g.firstName {
			g.firstName = sl.Name
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			addr := ep.Addresses[0]
			zone := ""
			if ep.Zone != nil {
				zone = *ep.Zone
			}
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			serving := ep.Conditions.Serving == nil || *ep.Conditions.Serving
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			switch {
			case ready && !terminating:
				g.ready[addr] = zone
			case serving && terminating:
				g.fallback[addr] = zone
			}
		}
	}
	var best *group
	for _, g := range groups {
		if best == nil || len(g.ready) > len(best.ready) ||
			len(g.ready) == len(best.ready) && (len(g.fallback) > len(best.fallback) ||
				len(g.fallback) == len(best.fallback) && g.firstName < best.firstName) {
			best = g
		}
	}
	if best == nil {
		targets = make([]int, len(ports))
		for i, p := range ports {
			targets[i] = int(p.Port)
			if p.TargetPort.IntValue() > 0 {
				targets[i] = p.TargetPort.IntValue()
			}
		}
		return targets, []string{}, nil
	}
	chosen := best.ready
	if len(chosen) == 0 {
		chosen = best.fallback
	}
	eps = slices.Sorted(maps.Keys(chosen))
	for a, z := range chosen {
		if z != "" {
			if zones == nil {
				zones = map[string]string{}
			}
			zones[a] = z
		}
	}
	if eps == nil {
		eps = []string{}
	}
	return best.targets, eps, zones
}

// sliceTargets maps each service port to the number the slice's
// endpoints serve it on, by port name; ok is false when the slice does
// not serve every port.
func sliceTargets(ports []corev1.ServicePort, sl *discoveryv1.EndpointSlice) ([]int, bool) {
	out := make([]int, len(ports))
	for i, p := range ports {
		found := false
		for _, ep := range sl.Ports {
			name := ""
			if ep.Name != nil {
				name = *ep.Name
			}
			proto := corev1.ProtocolTCP
			if ep.Protocol != nil {
				proto = *ep.Protocol
			}
			if name == p.Name && proto == corev1.ProtocolTCP && ep.Port != nil {
				out[i], found = int(*ep.Port), true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return out, true
}

// statusDiffers reports whether applying want to have would change it,
// LastTransitionTime aside. A Conflict condition that want leaves out is
// one to remove.
func statusDiffers(have []metav1.Condition, want []metav1.Condition) bool {
	for _, w := range want {
		h := meta.FindStatusCondition(have, w.Type)
		if h == nil || h.Status != w.Status || h.Reason != w.Reason || h.Message != w.Message || h.ObservedGeneration != w.ObservedGeneration {
			return true
		}
	}
	if meta.FindStatusCondition(want, string(mcsv1a1.ServiceExportConditionConflict)) == nil &&
		meta.FindStatusCondition(have, string(mcsv1a1.ServiceExportConditionConflict)) != nil {
		return true
	}
	return false
}

// applyStatus returns have with want applied (see statusDiffers).
func applyStatus(have []metav1.Condition, want []metav1.Condition) []metav1.Condition {
	out := slices.Clone(have)
	for _, w := range want {
		meta.SetStatusCondition(&out, w)
	}
	if meta.FindStatusCondition(want, string(mcsv1a1.ServiceExportConditionConflict)) == nil {
		meta.RemoveStatusCondition(&out, string(mcsv1a1.ServiceExportConditionConflict))
	}
	return out
}
