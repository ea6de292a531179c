package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// slogHCLog is the hclog.Logger that raft and raft-wal log through: each
// record goes to a *slog.Logger with its level, message and key-value
// arguments as they are, so a JSON line carries raft's message once, under
// "msg". The hclog name ("raft", "raft.wal") is the "logger" attribute.
type slogHCLog struct {
	log     *slog.Logger
	name    string
	implied []any
	// level is the least hclog level passed on; loggers derived by With
	// and Named share it, as hclog's own do.
	level *atomic.Int32
}

var _ hclog.Logger = (*slogHCLog)(nil)

// newHCLog returns an hclog.Logger named name that writes to log records
// at level and above (slog's handler may drop more).
func newHCLog(log *slog.Logger, name string, level hclog.Level) hclog.Logger {
	l := &slogHCLog{log: log, name: name, level: new(atomic.Int32)}
	l.level.Store(int32(level))
	return l
}

// slogLevel maps hclog's levels onto slog's: trace and debug are debug.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// plain renders hclog's formatting helpers the way hclog prints them;
// other values pass through for the slog handler to render.
func plain(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case hclog.Format:
			if len(v) > 0 {
				if f, ok := v[0].(string); ok {
					a = fmt.Sprintf(f, v[1:]...)
				}
			}
		case hclog.Hex:
			a = fmt.Sprintf("0x%x", int(v))
		case hclog.Octal:
			a = fmt.Sprintf("0%o", int(v))
		case hclog.Binary:
			a = fmt.Sprintf("0b%b", int(v))
		case hclog.Quote:
			a = fmt.Sprintf("%q", string(v))
		}
		out[i] = a
	}
	return out
}

func (l *slogHCLog) enabled(level hclog.Level) bool {
	if level == hclog.Off {
		return false
	}
	if level != hclog.NoLevel && level < hclog.Level(l.level.Load()) {
		return false
	}
	return l.log.Enabled(context.Background(), slogLevel(level))
}

// Log implements hclog.Logger. A record without a level is logged at info.
// An error or warning that is only raft's transport shutting down (a
// connection from a peer cut as the Store closes) is logged at debug:
// it comes with every clean stop.
func (l *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Error || level == hclog.Warn {
		for _, a := range args {
			if err, ok := a.(error); ok && errors.Is(err, raft.ErrTransportShutdown) {
				level = hclog.Debug
			}
		}
	}
	if !l.enabled(level) {
		return
	}
	args = plain(args)
	if l.name != "" {
		args = append([]any{"logger", l.name}, args...)
	}
	l.log.Log(context.Background(), slogLevel(level), msg, args...)
}

// Trace implements hclog.Logger.
func (l *slogHCLog) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (l *slogHCLog) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (l *slogHCLog) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (l *slogHCLog) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (l *slogHCLog) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (l *slogHCLog) IsTrace() bool { return l.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (l *slogHCLog) IsDebug() bool { return l.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (l *slogHCLog) IsInfo() bool { return l.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (l *slogHCLog) IsWarn() bool { return l.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (l *slogHCLog) IsError() bool { return l.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (l *slogHCLog) ImpliedArgs() []any { return l.implied }

// With implements hclog.Logger.
func (l *slogHCLog) With(args ...any) hclog.Logger {
	c := *l
	c.log = l.log.With(plain(args)...)
	c.implied = append(append([]any(nil), l.implied...), args...)
	return &c
}

// Name implements hclog.Logger.
func (l *slogHCLog) Name() string { return l.name }

// Named implements hclog.Logger: the name is appended to this logger's.
func (l *slogHCLog) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return l.ResetNamed(name)
}

// ResetNamed implements hclog.Logger.
func (l *slogHCLog) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel implements hclog.Logger.
func (l *slogHCLog) SetLevel(level hclog.Level) { l.level.Store(int32(level)) }

// GetLevel implements hclog.Logger.
func (l *slogHCLog) GetLevel() hclog.Level { return hclog.Level(l.level.Load()) }

// StandardLogger implements hclog.Logger.
func (l *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger: each write is one record, at
// opts.ForceLevel, or at the level of a leading "[WARN]"-style tag if
// opts.InferLevels, else at info.
func (l *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return stdWriter{l: l, opts: *opts}
}

type stdWriter struct {
	l    *slogHCLog
	opts hclog.StandardLoggerOptions
}

var levelTags = []struct {
	tag   string
	level hclog.Level
}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error}}

func (w stdWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, " \t\n"))
	level := hclog.Info
	if w.opts.InferLevels || w.opts.ForceLevel != hclog.NoLevel {
		for _, t := range levelTags {
			if m, ok := strings.CutPrefix(msg, t.tag); ok {
				msg, level = strings.TrimSpace(m), t.level
				break
			}
		}
	}
	if w.opts.ForceLevel != hclog.NoLevel {
		level = w.opts.ForceLevel
	}
	w.l.Log(level, msg)
	return len(p), nil
}
