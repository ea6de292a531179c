package kube

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/straitmesh/strait/internal/configfile"
)

// Names this package reads and writes on Kubernetes objects.
const (
	// LabelsAnnotation on a ServiceExport carries the exported service's
	// residency labels, as comma-separated key=value pairs with
	// Kubernetes label syntax: "data-class=pii-eu, tier=gold".
	LabelsAnnotation = "strait.io/labels"
	// ManagedByLabel marks the ServiceImports a gateway owns; it creates,
	// updates and deletes those only.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedBy is ManagedByLabel's value.
	ManagedBy = "strait"
	// serviceNameLabel ties an EndpointSlice to its Service.
	serviceNameLabel = "kubernetes.io/service-name"
)

// Reasons of the Valid condition besides the MCS API's own (Valid,
// NoService, InvalidServiceType), which controllers may add to.
const (
	// ReasonInvalidLabels: the LabelsAnnotation cannot be read; the
	// service is not exported rather than exported without its
	// residency labels.
	ReasonInvalidLabels = "InvalidLabels"
	// ReasonNoTCPPorts: the Service has no TCP port to carry.
	ReasonNoTCPPorts = "NoTCPPorts"
	// ReasonTooManyPorts: the Service has more TCP ports than the
	// federation catalog carries for one service (MaxPorts).
	ReasonTooManyPorts = "TooManyPorts"
	// problemNoSelector counts exports of Services without a selector:
	// valid, their endpoints come from EndpointSlices kept by hand.
	problemNoSelector = "NoSelector"
)

// MaxPorts is the most TCP ports an exported Service may have: the
// catalog refuses entries with more (catalog.MaxPorts).
const MaxPorts = 64

// maxLabels bounds the residency labels of one export (catalog.MaxLabels).
const maxLabels = 64

// Config is discovery.kubernetes in the gateway configuration.
type Config struct {
	// Kubeconfig is the path of a kubeconfig file (its current context is
	// used). Default empty: the in-cluster configuration of the pod's
	// ServiceAccount.
	Kubeconfig string `mapstructure:"kubeconfig"`
	// Namespaces limits discovery, and the ServiceImports the gateway
	// writes, to these namespaces; RBAC can then be Roles in each.
	// Default empty: all namespaces (ClusterRole).
	Namespaces []string `mapstructure:"namespaces"`
	// SyncTimeout bounds the first list of every watched resource at
	// start. Default 30s.
	SyncTimeout time.Duration `mapstructure:"syncTimeout"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{SyncTimeout: 30 * time.Second} }

// Validate reports every problem, each naming its key under prefix
// (e.g. "discovery.kubernetes.").
func (c Config) Validate(prefix string) error {
	var errs []error
	seen := map[string]int{}
	for i, ns := range c.Namespaces {
		key := fmt.Sprintf("%snamespaces.%d", prefix, i)
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, configfile.Errorf(key, "%q is not a namespace name: %s", ns, msgs[0]))
		}
		if j, dup := seen[ns]; dup {
			errs = append(errs, configfile.Errorf(key, "namespace %s already listed at %snamespaces.%d", ns, prefix, j))
		}
		seen[ns] = i
	}
	if c.SyncTimeout <= 0 {
		errs = append(errs, configfile.Errorf(prefix+"syncTimeout", "must be positive, found %s", c.SyncTimeout))
	}
	return errors.Join(errs...)
}
