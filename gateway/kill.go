package gateway

// Kill stops the gateway as the death of its process would: every
// listener and every open connection is closed at once, with no drain,
// and gossip stops without a leave message, so the other gateways learn
// of it only from their failure detectors (and from connections that
// fail). Failover tests use it; operators stop a gateway with Shutdown.
//
// Kill does not wait for the handlers of the closed connections: they end
// as their reads and writes fail. Kill after Shutdown, or Shutdown after
// Kill, does nothing.
func (g *Gateway) Kill() {
	g.shutOnce.Do(func() {
		g.life.kill()
		g.log.Info("gateway killed")
	})
}

// kill refuses new connections and closes every open one.
func (t *connTracker) kill() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.closeAll()
}
