package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// component is one part of the gateway's lifecycle. The gateway keeps one
// ordered list of them (Gateway.components): Start starts them in order,
// and the same list, walked backwards, rolls back a failed start (kill),
// drains (Shutdown) and kills (Kill). A new subsystem is one entry.
type component struct {
	name string
	// start brings the component up; nil when it has nothing to start.
	start func() error
	// drain stops it gracefully within ctx; nil means kill.
	drain func(ctx context.Context) error
	// kill stops it at once; nil when it has nothing to stop.
	kill func()
}

// lifecycle runs components forwards and backwards. Only the components
// that started are stopped.
type lifecycle struct {
	log     *slog.Logger
	started []component
}

// start starts cs in order. When one fails, the ones already started are
// killed in reverse order and the error names the component that failed.
func (l *lifecycle) start(cs []component) error {
	for _, c := range cs {
		if c.start != nil {
			if err := c.start(); err != nil {
				l.kill()
				return fmt.Errorf("start %s: %w", c.name, err)
			}
		}
		l.started = append(l.started, c)
	}
	return nil
}

// drain stops every started component gracefully, in reverse order. Every
// component is stopped even when one fails; the errors are joined.
func (l *lifecycle) drain(ctx context.Context) error {
	var errs []error
	for i := len(l.started) - 1; i >= 0; i-- {
		c := l.started[i]
		switch {
		case c.drain != nil:
			if err := c.drain(ctx); err != nil {
				l.log.Warn("stop component", "component", c.name, "err", err)
				errs = append(errs, fmt.Errorf("stop %s: %w", c.name, err))
			}
		case c.kill != nil:
			c.kill()
		}
	}
	l.started = nil
	return errors.Join(errs...)
}

// kill stops every started component at once, in reverse order.
func (l *lifecycle) kill() {
	for i := len(l.started) - 1; i >= 0; i-- {
		if k := l.started[i].kill; k != nil {
			k()
		}
	}
	l.started = nil
}
