package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
)

// Reading HTTP/1.1 requests from local workloads. The head is read line
// by line, checked strictly, and parsed on its own; the body is then read
// from the connection by the framing the head declared, so the reader
// stops exactly where the next request starts. What request smuggling
// relies on is refused rather than guessed at: a line not ending in CRLF
// (bare LF or CR), obs-fold, white space before a field's colon, and
// Content-Length together with Transfer-Encoding. Go's parser refuses the
// rest (two different Content-Lengths, a transfer coding other than
// chunked, a malformed chunk size).

// Limits of a request head (beyond them: 431).
const (
	maxRequestHead   = 64 << 10
	maxRequestFields = 100
)

// errHeadTooLarge is a head over maxRequestHead bytes or maxRequestFields
// fields.
var errHeadTooLarge = errors.New("request head too large")

// badHeadError is a head the gateway refuses (400).
type badHeadError struct{ why string }

func (e *badHeadError) Error() string { return e.why }

func badHead(format string, args ...any) error {
	return &badHeadError{fmt.Sprintf(format, args...)}
}

// readRequest reads one request from br: its head (readHead) and a body
// that reads exactly the declared length or chunks from br. The body must
// be read to its end before the next request is read.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	head, err := readHead(br)
	if err != nil {
		return nil, err
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, badHead("%v", err)
	}
	switch {
	case len(req.TransferEncoding) > 0: // only chunked gets past ReadRequest
		req.Body = io.NopCloser(&chunkedBody{br: br, r: httputil.NewChunkedReader(br)})
	case req.ContentLength > 0:
		req.Body = io.NopCloser(&exactBody{r: br, n: req.ContentLength})
	default:
		req.Body = http.NoBody
	}
	return req, nil
}

// readHead reads a request head, up to and including its empty line, and
// checks it. Empty lines before the request line are skipped (RFC 9112
// 2.2), a few at most.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	fields, lines := 0, 0
	sawLength, sawCoding := false, false
	for {
		line, err := readLine(br, maxRequestHead-len(head))
		if err != nil {
			if len(head) == 0 && lines == 0 && errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, err
		}
		lines++
		content, ok := bytes.CutSuffix(line, []byte("\r\n"))
		if !ok || bytes.ContainsAny(content, "\r\n") {
			return nil, badHead("line %d does not end in CRLF", lines)
		}
		if len(head) == 0 && len(content) == 0 {
			if lines > 4 {
				return nil, badHead("empty lines instead of a request")
			}
			continue
		}
		head = append(head, line...)
		if len(content) == 0 {
			break // the end of the head
		}
		if len(head) == len(line) {
			continue // the request line; ReadRequest checks it
		}
		if content[0] == ' ' || content[0] == '\t' {
			return nil, badHead("line %d folds a field over two lines (obs-fold)", lines)
		}
		colon := bytes.IndexByte(content, ':')
		if colon <= 0 || !isToken(content[:colon]) {
			return nil, badHead("line %d is not a header field (name: value)", lines)
		}
		if fields++; fields > maxRequestFields {
			return nil, fmt.Errorf("%w: more than %d fields", errHeadTooLarge, maxRequestFields)
		}
		name := content[:colon]
		sawLength = sawLength || bytes.EqualFold(name, []byte("Content-Length"))
		sawCoding = sawCoding || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	}
	if sawLength && sawCoding {
		return nil, badHead("both Content-Length and Transfer-Encoding")
	}
	return head, nil
}

// readLine reads one line, '\n' included, of at most budget bytes.
func readLine(br *bufio.Reader, budget int) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		if len(line)+len(part) > budget {
			return nil, fmt.Errorf("%w: more than %d bytes", errHeadTooLarge, maxRequestHead)
		}
		line = append(line, part...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// isToken reports whether b is an HTTP token (RFC 9110 5.6.2): a field
// name without white space.
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// exactBody reads exactly n bytes; a connection that ends sooner is an
// error, never a shorter body.
type exactBody struct {
	r io.Reader
	n int64
}

func (b *exactBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.n)])
	b.n -= int64(n)
	if errors.Is(err, io.EOF) && b.n > 0 {
		err = io.ErrUnexpectedEOF
	} else if b.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// chunkedBody reads a chunked body and then its trailer section, which is
// read and dropped (bounded like a head), so the reader stops at the next
// request.
type chunkedBody struct {
	br   *bufio.Reader
	r    io.Reader
	done bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		if terr := b.skipTrailers(); terr != nil {
			return n, terr
		}
		b.done = true
	}
	return n, err
}

func (b *chunkedBody) skipTrailers() error {
	read := 0
	for range maxRequestFields + 1 {
		line, err := readLine(b.br, maxRequestHead-read)
		if err != nil {
			return err
		}
		read += len(line)
		if string(line) == "\r\n" {
			return nil
		}
	}
	return fmt.Errorf("%w: more than %d trailer fields", errHeadTooLarge, maxRequestFields)
}
