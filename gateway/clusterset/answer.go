package clusterset

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Service is one imported service as the DNS server answers for it.
type Service struct {
	Namespace, Name string
	// Addrs are the local addresses where the gateway serves every
	// imported port of the service.
	Addrs []netip.Addr
	// Ports are the imported ports, for SRV records.
	Ports []int
}

// PortNamer names a port of a service (the name the clusters that export
// it give it), or returns "" when it has no name. It backs SRV answers.
type PortNamer func(namespace, name string, port int) string

// Table is what the server answers: the services and their addresses
// under one domain. It is immutable once made.
type Table struct {
	domain string // lower case, no trailing dot
	ttl    uint32
	byName map[string]*Service // by ServiceName
	// namespaces with at least one service (their <ns>.svc.<domain> exists).
	namespaces map[string]bool
	soa        *dns.SOA
}

// NewTable makes the table of svcs under domain (see NormalizeDomain)
// with answers that live ttl (whole seconds, at least one). Services
// without an address are left out: their names do not exist.
func NewTable(domain string, ttl time.Duration, svcs []Service) *Table {
	secs := uint32(max(ttl/time.Second, 1))
	t := &Table{domain: domain, ttl: secs, byName: map[string]*Service{}, namespaces: map[string]bool{}}
	for _, s := range svcs {
		if len(s.Addrs) == 0 {
			continue
		}
		s := s
		s.Addrs = slices.Clone(s.Addrs)
		s.Ports = slices.Clone(s.Ports)
		slices.SortFunc(s.Addrs, netip.Addr.Compare)
		slices.Sort(s.Ports)
		t.byName[ServiceName(s.Namespace, s.Name, domain)] = &s
		t.namespaces[s.Namespace] = true
	}
	apex := domain + "."
	// The SOA's minimum is the negative TTL (RFC 2308): a name that is
	// imported a moment later is not kept out of caches for longer than
	// the positive answers live.
	t.soa = &dns.SOA{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: secs},
		Ns: apex, Mbox: "hostmaster." + apex, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: secs}
	return t
}

// Domain is the table's domain, lower case without the trailing dot.
func (t *Table) Domain() string { return t.domain }

// Services lists the services that have names, sorted by name.
func (t *Table) Services() []Service {
	out := make([]Service, 0, len(t.byName))
	for _, s := range t.byName {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

// Lookup returns the service a name of any case stands for.
func (t *Table) Lookup(qname string) (*Service, bool) {
	n, ok := ParseName(qname, t.domain)
	if !ok || n.Kind != KindService {
		return nil, false
	}
	s, ok := t.byName[ServiceName(n.Namespace, n.Service, t.domain)]
	return s, ok
}

// maxUDP is the largest answer sent over UDP to a client that offers
// more with EDNS0 (the 2020 DNS flag day's size, which avoids
// fragmentation).
const maxUDP = 1232

// Answer computes the response to req. It never returns nil: a question
// it cannot answer gets FORMERR, NOTIMP or REFUSED. udp says the answer
// goes over UDP, where it is truncated to what the client takes.
func (t *Table) Answer(req *dns.Msg, names PortNamer, udp bool) *dns.Msg {
	resp := new(dns.Msg)
	resp.Id = req.Id
	resp.Response = true
	resp.Opcode = req.Opcode
	resp.RecursionDesired = req.RecursionDesired
	resp.CheckingDisabled = req.CheckingDisabled
	if len(req.Question) > 0 {
		resp.Question = []dns.Question{req.Question[0]}
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDP)
		resp.SetEdns0(maxUDP, false)
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers
			return resp
		}
	}
	switch {
	case req.Response:
		resp.Rcode = dns.RcodeFormatError
		return resp
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		return resp
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	q := req.Question[0]
	n, ok := ParseName(q.Name, t.domain)
	if !ok || q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	resp.Authoritative = true
	t.answerName(resp, q, n, names)
	if udp {
		resp.Truncate(size)
	}
	return resp
}

// answerName fills resp for a question under the domain.
func (t *Table) answerName(resp *dns.Msg, q dns.Question, n Name, names PortNamer) {
	nodata := func() { resp.Ns = append(resp.Ns, dns.Copy(t.soa)) }
	nxdomain := func() {
		resp.Rcode = dns.RcodeNameError
		nodata()
	}
	switch n.Kind {
	case KindApex:
		if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
			soa := dns.Copy(t.soa)
			soa.Header().Name = q.Name
			resp.Answer = append(resp.Answer, soa)
			return
		}
		nodata()
	case KindParent:
		if n.Namespace != "" && !t.namespaces[n.Namespace] || n.Namespace == "" && len(t.byName) == 0 {
			nxdomain()
			return
		}
		nodata()
	case KindService:
		s, ok := t.byName[ServiceName(n.Namespace, n.Service, t.domain)]
		if !ok {
			nxdomain()
			return
		}
		resp.Answer = t.addrs(q.Name, s, q.Qtype)
		if len(resp.Answer) == 0 {
			nodata()
		}
	case KindPort:
		s, ok := t.byName[ServiceName(n.Namespace, n.Service, t.domain)]
		if !ok || n.Proto != "tcp" || names == nil {
			nxdomain()
			return
		}
		target := ServiceName(s.Namespace, s.Name, t.domain)
		var srv []dns.RR
		for _, p := range s.Ports {
			if names(s.Namespace, s.Name, p) == n.PortName {
				srv = append(srv, &dns.SRV{Hdr: t.hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 0, Port: uint16(p), Target: target})
			}
		}
		if len(srv) == 0 {
			nxdomain()
			return
		}
		if q.Qtype != dns.TypeSRV && q.Qtype != dns.TypeANY {
			nodata()
			return
		}
		resp.Answer = srv
		resp.Extra = append(resp.Extra, t.addrs(target, s, dns.TypeANY)...)
	default:
		nxdomain()
	}
}

// addrs are the A and AAAA records of s that answer qtype, named name.
func (t *Table) addrs(name string, s *Service, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, a := range s.Addrs {
		switch {
		case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
			out = append(out, &dns.A{Hdr: t.hdr(name, dns.TypeA), A: a.AsSlice()})
		case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
			out = append(out, &dns.AAAA{Hdr: t.hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}

func (t *Table) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: t.ttl}
}
