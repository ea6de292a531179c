package gateway

import "github.com/prometheus/client_golang/prometheus"

// DescribedMetricNames returns the names of the metrics g's own collectors
// describe, whether or not they have a series yet.
func DescribedMetricNames(g *Gateway) []string {
	var names []string
	for _, c := range g.metrics.all() {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				names = append(names, m[1])
			}
		}
	}
	return names
}
