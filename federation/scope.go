package federation

// Scope tells the catalog which regions may learn about a service. The
// residency engine implements it for classes with `catalog: region-only`.
type Scope interface {
	// CatalogRegions returns the regions whose gateways may receive svc's
	// catalog entry; restricted=false means every region may.
	CatalogRegions(namespace, name string, labels map[string]string) (regions []string, restricted bool)
}
