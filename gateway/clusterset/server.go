package clusterset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the DNS server's own part of the gateway's dns section.
type Config struct {
	// Listen is the address answered on, over UDP and TCP alike. Port 0
	// picks one port free for both.
	Listen string
}

// Options carries the server's dependencies.
type Options struct {
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Queries counts answers by query type and response code (labels
	// qtype, rcode). Optional.
	Queries *prometheus.CounterVec
	// PortNames backs SRV answers. Nil: no SRV records.
	PortNames PortNamer
	// TCPListener, when set, wraps the TCP listener (a connection
	// budget).
	TCPListener func(net.Listener) net.Listener
}

// Server answers the names of a Table over UDP and TCP.
type Server struct {
	table *Table
	opts  Options
	log   *slog.Logger
	udp   *dns.Server
	tcp   *dns.Server
	addr  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	state string
}

// bindAttempts bounds the tries to find one free port for UDP and TCP
// when the config asks for port 0.
const bindAttempts = 16

// Listen binds cfg.Listen over UDP and TCP; Serve starts answering.
func Listen(cfg Config, t *Table, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{table: t, opts: opts, log: opts.Logger, state: "bound"}
	pc, ln, err := bind(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if opts.TCPListener != nil {
		ln = opts.TCPListener(ln)
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serveDNS)
	common := func(srv *dns.Server) *dns.Server {
		srv.Handler = h
		// Questions the default would refuse itself (several questions,
		// another opcode) reach the handler, which answers and counts
		// them; only responses are dropped.
		srv.MsgAcceptFunc = func(dh dns.Header) dns.MsgAcceptAction {
			if dh.Bits&(1<<15) != 0 {
				return dns.MsgIgnore
			}
			return dns.MsgAccept
		}
		srv.MsgInvalidFunc = s.invalid
		srv.ReadTimeout = 2 * time.Second
		return srv
	}
	s.udp = common(&dns.Server{PacketConn: pc, UDPSize: dns.DefaultMsgSize})
	s.tcp = common(&dns.Server{Listener: ln, IdleTimeout: func() time.Duration { return 8 * time.Second }, MaxTCPQueries: 128})
	return s, nil
}

// bind listens on addr over UDP and TCP with the same port.
func bind(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns listen address %q: %w", addr, err)
	}
	var lastErr error
	for range bindAttempts {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen dns udp on %s: %w", addr, err)
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = fmt.Errorf("listen dns tcp on %s: %w", tcpAddr, err)
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

// Addr is the bound address, UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Table is what the server answers.
func (s *Server) Table() *Table { return s.table }

// State is bound, serving or stopped.
func (s *Server) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Serve starts answering and returns once both transports do, or with
// the first that failed to start.
func (s *Server) Serve() error {
	started := make(chan struct{}, 2)
	failed := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				if s.State() != "stopped" {
					s.log.Error("dns server stopped", "addr", s.addr, "err", err)
				}
				failed <- err
			}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-failed:
			s.Shutdown(context.Background())
			return fmt.Errorf("serve dns on %s: %w", s.addr, err)
		}
	}
	s.mu.Lock()
	s.state = "serving"
	s.mu.Unlock()
	s.log.Info("dns serving", "addr", s.addr, "domain", s.table.domain, "names", len(s.table.byName))
	return nil
}

// Shutdown stops both transports and waits for their loops; answers
// under way finish within their write.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	was := s.state
	s.state = "stopped"
	s.mu.Unlock()
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if was != "serving" {
			// Never started: close the sockets it holds.
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
			continue
		}
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop dns on %s: %w", s.addr, err)
	}
	return nil
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.LocalAddr().(*net.UDPAddr)
	resp := s.table.Answer(req, s.opts.PortNames, udp)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns answer not sent", "peer", w.RemoteAddr().String(), "err", err)
	}
	qtype := qtypeNone
	if len(req.Question) > 0 {
		qtype = QtypeLabel(req.Question[0].Qtype)
	}
	s.count(qtype, RcodeLabel(resp.Rcode))
}

// invalid counts a message that could not be read: answered FORMERR by
// miekg/dns when its header could be read, else dropped.
func (s *Server) invalid(m []byte, _ error) {
	if len(m) < 12 {
		s.count(qtypeNone, rcodeDropped)
		return
	}
	s.count(qtypeNone, RcodeLabel(dns.RcodeFormatError))
}

func (s *Server) count(qtype, rcode string) {
	if s.opts.Queries != nil {
		s.opts.Queries.WithLabelValues(qtype, rcode).Inc()
	}
}

// Label values of strait_dns_queries_total beyond query types and
// response codes.
const (
	qtypeNone    = "none"    // no question could be read
	qtypeOther   = "other"   // a type not in countedTypes
	rcodeDropped = "dropped" // too short to answer
)

// countedTypes are the query types counted by name; the rest are other,
// which keeps the metric's label values few.
var countedTypes = map[uint16]bool{dns.TypeA: true, dns.TypeAAAA: true, dns.TypeSRV: true, dns.TypeSOA: true, dns.TypeNS: true,
	dns.TypeANY: true, dns.TypeCNAME: true, dns.TypePTR: true, dns.TypeTXT: true, dns.TypeHTTPS: true, dns.TypeSVCB: true}

// QtypeLabel is the qtype label value of a query type.
func QtypeLabel(t uint16) string {
	if countedTypes[t] {
		return dns.TypeToString[t]
	}
	return qtypeOther
}

// RcodeLabel is the rcode label value of a response code.
func RcodeLabel(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return strconv.Itoa(rc)
}
