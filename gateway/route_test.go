package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestStatusLine(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStatus(&buf, nil); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("payload")
	if err := readStatus(&buf); err != nil {
		t.Fatalf("readStatus(OK) = %v", err)
	}
	if rest, _ := io.ReadAll(&buf); string(rest) != "payload" {
		t.Fatalf("payload after status = %q; readStatus consumed payload bytes", rest)
	}

	buf.Reset()
	writeStatus(&buf, errors.New("no endpoint\nanswered"))
	err := readStatus(&buf)
	if err == nil || err.Error() != "no endpoint answered" {
		t.Fatalf("readStatus(ERR) = %v", err)
	}

	buf.Reset()
	writeStatus(&buf, errors.New(strings.Repeat("x", 2000)))
	if buf.Len() != maxStatusLine {
		t.Fatalf("long refusal is %d bytes, want %d", buf.Len(), maxStatusLine)
	}
	if err := readStatus(&buf); err == nil {
		t.Fatal("truncated refusal read as OK")
	}

	for _, in := range []string{"", "OK", "HTTP/1.1 200 OK\r\n", strings.Repeat("y", 600)} {
		if err := readStatus(strings.NewReader(in)); err == nil {
			t.Errorf("readStatus(%q) = nil", in)
		}
	}
}
