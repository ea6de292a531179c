package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// jsonLines decodes each JSON log line into a map, failing if a line
// carries any top-level key twice.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		if _, err := dec.Token(); err != nil { // {
			t.Fatalf("%s: %v", line, err)
		}
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if seen[k.(string)] {
				t.Fatalf("key %q twice in %s", k, line)
			}
			seen[k.(string)] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	return lines
}

func jsonLogger(buf *bytes.Buffer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
}

func TestHCLogGoesStraightToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(jsonLogger(&buf, slog.LevelDebug).With("component", "state"), "raft", hclog.Trace)

	l.Trace("heartbeat", "peer", "n1")
	l.Debug("append", "index", 7)
	l.Info("entering follower state", "leader-id", "n2")
	l.Warn("failed to contact", "server-id", "n3", "error", errors.New("connection refused"))
	l.Error("failed to restore", "detail", hclog.Fmt("%d of %s", 3, "four"), "mask", hclog.Hex(255))
	l.Log(hclog.NoLevel, "no level")
	wal := l.With("dir", "/data/raft-log").Named("wal")
	wal.Info("segment sealed", "segment", 2)
	l.ResetNamed("snapshots").Info("reset name")

	want := []map[string]any{
		{"level": "DEBUG", "msg": "heartbeat", "component": "state", "logger": "raft", "peer": "n1"},
		{"level": "DEBUG", "msg": "append", "component": "state", "logger": "raft", "index": 7.0},
		{"level": "INFO", "msg": "entering follower state", "component": "state", "logger": "raft", "leader-id": "n2"},
		{"level": "WARN", "msg": "failed to contact", "component": "state", "logger": "raft", "server-id": "n3", "error": "connection refused"},
		{"level": "ERROR", "msg": "failed to restore", "component": "state", "logger": "raft", "detail": "3 of four", "mask": "0xff"},
		{"level": "INFO", "msg": "no level", "component": "state", "logger": "raft"},
		{"level": "INFO", "msg": "segment sealed", "component": "state", "dir": "/data/raft-log", "logger": "raft.wal", "segment": 2.0},
		{"level": "INFO", "msg": "reset name", "component": "state", "logger": "snapshots"},
	}
	got := jsonLines(t, buf.String())
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		delete(got[i], "time")
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("line %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
	if n := wal.Name(); n != "raft.wal" {
		t.Errorf("Name() = %q, want raft.wal", n)
	}
	if a := wal.ImpliedArgs(); !reflect.DeepEqual(a, []any{"dir", "/data/raft-log"}) {
		t.Errorf("ImpliedArgs() = %v", a)
	}
}

func TestHCLogLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(jsonLogger(&buf, slog.LevelDebug), "raft", hclog.Info)
	sub := l.Named("wal")
	if l.IsDebug() || l.IsTrace() || !l.IsInfo() || !l.IsWarn() || !l.IsError() {
		t.Fatal("an info logger reports the wrong levels enabled")
	}
	l.Debug("dropped")
	sub.Trace("dropped")
	// Loggers derived by Named and With share the level, as hclog's do.
	sub.SetLevel(hclog.Debug)
	if l.GetLevel() != hclog.Debug || !l.IsDebug() || l.IsTrace() {
		t.Fatalf("after SetLevel(debug) on a sub-logger: level %v", l.GetLevel())
	}
	l.Debug("kept")
	l.SetLevel(hclog.Off)
	l.Error("dropped")

	// The slog handler's level applies too.
	var quiet bytes.Buffer
	q := newHCLog(jsonLogger(&quiet, slog.LevelWarn), "raft", hclog.Trace)
	q.Info("dropped")
	if q.IsInfo() || !q.IsWarn() {
		t.Fatal("levels the slog handler drops are reported enabled")
	}
	if quiet.Len() != 0 {
		t.Fatalf("handler at warn wrote %s", quiet.String())
	}

	got := jsonLines(t, buf.String())
	if len(got) != 1 || got[0]["msg"] != "kept" {
		t.Fatalf("got %s", buf.String())
	}
}

// TestHCLogTransportShutdown: raft's transport reports each connection
// it cuts while the Store closes as an error; that is logged at debug,
// and every other error stays an error.
func TestHCLogTransportShutdown(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(jsonLogger(&buf, slog.LevelDebug), "raft-net", hclog.Debug)
	l.Error("failed to decode incoming command", "error", raft.ErrTransportShutdown)
	l.Warn("failed to send heartbeat", "error", fmt.Errorf("dial: %w", raft.ErrTransportShutdown))
	l.Error("failed to decode incoming command", "error", errors.New("unexpected EOF"))
	got := jsonLines(t, buf.String())
	want := []string{"DEBUG", "DEBUG", "ERROR"}
	if len(got) != len(want) {
		t.Fatalf("got %s", buf.String())
	}
	for i, line := range got {
		if line["level"] != want[i] {
			t.Errorf("record %d (%v: %v) at %v, want %s", i, line["msg"], line["error"], line["level"], want[i])
		}
	}
	// At info, the shutdown records are dropped.
	buf.Reset()
	quiet := newHCLog(jsonLogger(&buf, slog.LevelInfo), "raft-net", hclog.Info)
	quiet.Error("failed to decode incoming command", "error", raft.ErrTransportShutdown)
	if buf.Len() != 0 {
		t.Fatalf("an info logger wrote %s", buf.String())
	}
}

func TestHCLogStandardLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(jsonLogger(&buf, slog.LevelDebug), "raft", hclog.Trace)
	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[WARN] disk is slow")
	io.WriteString(l.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}), "[INFO] forced\n")
	l.StandardLogger(nil).Print("[DEBUG] kept as is")
	got := jsonLines(t, buf.String())
	want := [][2]string{{"WARN", "disk is slow"}, {"ERROR", "forced"}, {"INFO", "[DEBUG] kept as is"}}
	if len(got) != len(want) {
		t.Fatalf("got %s", buf.String())
	}
	for i, w := range want {
		if got[i]["level"] != w[0] || got[i]["msg"] != w[1] {
			t.Errorf("line %d: %v %q, want %v %q", i, got[i]["level"], got[i]["msg"], w[0], w[1])
		}
	}
}
