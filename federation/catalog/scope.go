package catalog

// Scope tells the catalog which regions may learn about a service. The
// residency engine implements it for classes with `catalog: region-only`.
type Scope interface {
	// CatalogRegions returns the regions whose gateways may receive svc's
	// catalog entry; restricted=false means every region may.
	CatalogRegions(namespace, name string, labels map[string]string) (regions []string, restricted bool)
}

// ScopeFunc adapts a function to Scope; tests use it as a stand-in.
type ScopeFunc func(namespace, name string, labels map[string]string) ([]string, bool)

// CatalogRegions implements Scope.
func (f ScopeFunc) CatalogRegions(namespace, name string, labels map[string]string) ([]string, bool) {
	return f(namespace, name, labels)
}
