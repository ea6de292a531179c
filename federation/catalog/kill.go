package catalog

// Kill stops gossip at once, as the death of the process would: no
// "left" announcement and no memberlist leave message, so the other
// members learn of it only from their failure detectors.
func (c *Catalog) Kill() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.cancel()
		if err := c.ml.Shutdown(); err != nil {
			c.log.Warn("stop gossip", "err", err)
		}
		c.bg.Wait()
		c.metrics.unregister()
	})
}
