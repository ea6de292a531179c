package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Reply is what a demo service answers to every request.
type Reply struct {
	Service  string `json:"service"`
	Cluster  string `json:"cluster"`
	Region   string `json:"region"`
	Endpoint string `json:"endpoint"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Host     string `json:"host"`
}

// DemoService is an HTTP server answering JSON that names the cluster and
// region that served the request.
type DemoService struct {
	Service, Cluster, Region string
	ln                       net.Listener
	srv                      *http.Server
	done                     chan struct{}
}

// StartDemo starts a demo service on addr (host:port; port 0 picks one).
func StartDemo(addr, service, cluster, region string) (*DemoService, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo %s in %s: listen %s: %w", service, cluster, addr, err)
	}
	d := &DemoService{Service: service, Cluster: cluster, Region: region, ln: ln, done: make(chan struct{})}
	d.srv = &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener was closed under us; Close reports nothing more useful
		}
	}()
	return d, nil
}

// Addr returns the listening address.
func (d *DemoService) Addr() string { return d.ln.Addr().String() }

// ServeHTTP implements http.Handler.
func (d *DemoService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(Reply{Service: d.Service, Cluster: d.Cluster, Region: d.Region, Endpoint: d.Addr(), Method: r.Method, Path: r.URL.Path, Host: r.Host})
}

// Close stops the service.
func (d *DemoService) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := d.srv.Shutdown(ctx)
	<-d.done
	return err
}
