package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/straitmesh/strait/gateway/fault"
)

// Faults is the fault mode of a gateway (docs/drills.md); a Gateway that
// implements it serves the fault routes:
//
//	POST   /v1/faults        inject a fault (fault.Spec) or renew its lease; the fault in force as JSON
//	DELETE /v1/faults/{id}   undo it at once
//	GET    /v1/faults        the faults in force, as a JSON array
//
// They are operator routes. With faults.enabled false every one answers
// 403 (fault.ErrOff).
type Faults interface {
	// FaultsEnabled reports whether faults.enabled is set.
	FaultsEnabled() bool
	InjectFault(fault.Spec) (fault.Fault, error)
	UndoFault(id string) (fault.Fault, error)
	Faults() []fault.Fault
}

// faultRoutes registers the fault routes when g has a fault mode.
func faultRoutes(mux *http.ServeMux, g Gateway, op func(http.HandlerFunc) http.HandlerFunc, log *slog.Logger) {
	fg, ok := g.(Faults)
	if !ok {
		return
	}
	mux.HandleFunc("GET /v1/faults", op(func(w http.ResponseWriter, r *http.Request) {
		if !fg.FaultsEnabled() {
			faultError(w, fault.ErrOff)
			return
		}
		writeJSON(w, fg.Faults())
	}))
	mux.HandleFunc("POST /v1/faults", op(func(w http.ResponseWriter, r *http.Request) {
		var s fault.Spec
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			http.Error(w, "body: want a fault {\"id\", \"kind\", \"peers\", \"delay\", \"jitter\", \"percent\", \"lease\"}: "+err.Error(), http.StatusBadRequest)
			return
		}
		f, err := fg.InjectFault(s)
		if err != nil {
			faultError(w, err)
			return
		}
		log.Info("fault request", "fault", f.ID, "kind", f.Kind, "operator", operatorOf(r.Context()), "remote", r.RemoteAddr, "expires", f.Expires)
		writeJSON(w, f)
	}))
	mux.HandleFunc("DELETE /v1/faults/{id...}", op(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		f, err := fg.UndoFault(id)
		if err != nil {
			faultError(w, err)
			return
		}
		log.Info("fault undo request", "fault", id, "operator", operatorOf(r.Context()), "remote", r.RemoteAddr)
		writeJSON(w, f)
	}))
}

func faultError(w http.ResponseWriter, err error) {
	var inv *fault.InvalidError
	switch {
	case errors.Is(err, fault.ErrOff):
		http.Error(w, err.Error(), http.StatusForbidden)
	case errors.Is(err, fault.ErrConflict):
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, fault.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.As(err, &inv):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		http.Error(w, strings.TrimSpace(err.Error()), http.StatusInternalServerError)
	}
}

// InjectFault asks the gateway to put s in force, or to renew its lease.
func (c Client) InjectFault(ctx context.Context, s fault.Spec) (fault.Fault, error) {
	var f fault.Fault
	err := c.call(ctx, http.MethodPost, "/v1/faults", s, &f)
	return f, err
}

// UndoFault asks the gateway to end the fault id at once.
func (c Client) UndoFault(ctx context.Context, id string) (fault.Fault, error) {
	var f fault.Fault
	err := c.call(ctx, http.MethodDelete, "/v1/faults/"+url.PathEscape(id), nil, &f)
	return f, err
}

// Faults lists the faults in force on the gateway.
func (c Client) Faults(ctx context.Context) ([]fault.Fault, error) {
	var fs []fault.Fault
	err := c.call(ctx, http.MethodGet, "/v1/faults", nil, &fs)
	return fs, err
}
