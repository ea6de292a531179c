package sovereignty

// CatalogRegions returns the regions whose gateways may receive the
// catalog entry of service namespace/name with labels. restricted is false
// when every region may: no class with catalog: region-only matches the
// service by a services matcher. Several such classes intersect. Sources
// and headers describe traffic, not services, so they never scope the
// catalog. The result is sorted and owned by the caller.
//
// *Engine implements catalog.Scope with it.
func (e *Engine) CatalogRegions(namespace, name string, labels map[string]string) (regions []string, restricted bool) {
	f := Flow{Namespace: namespace, Name: name, Labels: labels}
	all := set{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	for i := range e.classes {
		c := &e.classes[i]
		if !c.regionOnly {
			continue
		}
		for j := range c.services {
			if c.services[j].matches(&f) {
				all = all.and(c.allowed)
				restricted = true
				break
			}
		}
	}
	if !restricted {
		return nil, false
	}
	return e.names(all), true
}
