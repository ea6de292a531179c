package catalog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist.Delegate.
type delegate Catalog

func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Catalog)(d)
	b, _ := json.Marshal(nodeMeta{Cluster: c.self.Cluster, Region: c.self.Region, Zone: c.self.Zone, Cloud: c.self.Cloud, Data: c.self.DataAddr, Control: c.self.ControlAddr})
	if len(b) > limit {
		c.log.Error("node metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	c := (*Catalog)(d)
	c.metrics.bytesRecv.Add(float64(len(b)))
	m, err := DecodeMessage(b)
	if err != nil {
		c.metrics.decodeErrors.Inc()
		c.log.Warn("drop gossip message", "err", err)
		return
	}
	switch m.Kind {
	case kindDelta:
		c.merge(m.Nodes, true)
	case kindState:
		c.merge(m.Nodes, false)
	case kindKeyOp:
		c.handleKeyOp(m.KeyOp)
	case kindKeyAck:
		c.handleKeyAck(m.KeyAck)
	case kindWant:
		c.handleWant(m.Want)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	c := (*Catalog)(d)
	out := c.queue.GetBroadcasts(overhead, limit)
	for _, b := range out {
		c.metrics.bytesSent.Add(float64(len(b)))
		c.metrics.deltaBytes.Add(float64(len(b)))
	}
	return out
}

// LocalState is the full public catalog for push/pull. It is encoded once
// per change, not once per exchange.
func (d *delegate) LocalState(bool) []byte {
	c := (*Catalog)(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stateMsg == nil || c.stateAt != c.stateGen {
		nodes := make([]*wireNode, 0, len(c.nodes))
		for _, nd := range c.nodes {
			if !nd.verified {
				continue
			}
			wn := &wireNode{nodeHeader: nd.nodeHeader, Records: make([]*record, 0, len(nd.public))}
			wn.Full = true
			for _, r := range nd.public {
				wn.Records = append(wn.Records, r)
			}
			nodes = append(nodes, wn)
		}
		c.stateMsg = encodeMessage(&message{Kind: kindState, Nodes: nodes})
		c.stateAt = c.stateGen
		c.metrics.stateEncodes.Inc()
	}
	c.metrics.bytesSent.Add(float64(len(c.stateMsg)))
	return c.stateMsg
}

func (d *delegate) MergeRemoteState(b []byte, _ bool) {
	c := (*Catalog)(d)
	c.metrics.bytesRecv.Add(float64(len(b)))
	m, err := DecodeMessage(b)
	if err != nil || m.Kind != kindState {
		c.metrics.decodeErrors.Inc()
		c.log.Warn("drop remote catalog state", "err", err)
		return
	}
	c.merge(m.Nodes, false)
}

// events implements memberlist.EventDelegate.
type events Catalog

func (e *events) NotifyJoin(n *memberlist.Node) {
	c := (*Catalog)(e)
	n = c.rememberMember(n)
	c.setState(n, "alive")
	if n.Name != c.name {
		// Hand a newcomer our entry at once rather than at the next
		// push/pull, which may be many seconds away.
		c.sendOwnTo(n)
	}
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	c := (*Catalog)(e)
	c.setState(c.rememberMember(n), "alive")
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	c := (*Catalog)(e)
	c.forgetMember(n.Name)
	// A graceful leave shows either way: memberlist's own leave message
	// (the node is StateLeft) or the gateway's announcement (Leaving),
	// whichever arrived first.
	st := "dead"
	if n.State == memberlist.StateLeft {
		st = "left"
	}
	c.mu.Lock()
	if nd, ok := c.nodes[n.Name]; ok && nd.Leaving {
		st = "left"
	}
	c.mu.Unlock()
	c.log.Info("gateway gone", "peer", n.Name, "state", st)
	if st == "dead" {
		c.metrics.deadEvents.Inc()
	}
	c.setState(n, st)
}

// slogWriter turns memberlist's log lines into slog records. Once closing
// is set (the catalog shuts down), a line about memberlist's own sockets
// being closed is logged at debug: its probes and gossip still running
// as it shuts down find them closed, on every clean stop.
type slogWriter struct {
	log     *slog.Logger
	closing *atomic.Bool
}

func (w *slogWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		line := sc.Bytes()
		level := slog.LevelDebug
		switch {
		case w.closing != nil && w.closing.Load() && bytes.Contains(line, []byte(net.ErrClosed.Error())):
		case bytes.Contains(line, []byte("[ERR]")):
			level = slog.LevelError
		case bytes.Contains(line, []byte("[WARN]")):
			level = slog.LevelWarn
		case bytes.Contains(line, []byte("[INFO]")):
			level = slog.LevelInfo
		}
		w.log.Log(context.Background(), level, "memberlist", "msg", string(line))
	}
	return len(p), nil
}
