package gateway

import "github.com/straitmesh/strait/gateway/admin"

// ResidencyStatus describes the residency policy in force.
func (g *Gateway) ResidencyStatus() admin.ResidencyStatus {
	eng, version := g.res.current()
	st := admin.ResidencyStatus{Regions: []string{}, Groups: map[string][]string{}, Classes: []admin.ResidencyClass{}, Headers: []string{}}
	if rj, ok := g.res.src.(PolicyRejections); ok {
		if _, _, err := rj.LastRejection(); err != nil {
			st.Rejected = err.Error()
		}
	}
	if eng == nil {
		return st
	}
	st.InForce = true
	st.Policy = g.res.info(eng, version)
	st.Policy.Source = g.res.origin
	st.Default, st.Regions, st.Groups = eng.Default(), eng.Regions(), eng.Groups()
	st.Headers = append(st.Headers, eng.HeaderNames()...)
	for _, c := range eng.ClassList() {
		rc := admin.ResidencyClass{Name: c.Name, Allowed: c.Allowed, AllowedAs: c.AllowedAs, Catalog: c.Catalog, Rule: c.Rule.Path + " at " + c.Rule.At, Matchers: []string{}}
		for _, m := range c.Matchers {
			rc.Matchers = append(rc.Matchers, m.Kind+" "+m.Text)
		}
		st.Classes = append(st.Classes, rc)
	}
	return st
}
