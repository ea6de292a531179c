package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/straitmesh/strait/sovereignty"
)

// Client calls one gateway's admin API.
type Client struct {
	// Addr is the admin address, host:port or a URL. Its host is sent as
	// Host, so it must be loopback, the gateway's listen address or one of
	// its admin.allowedHosts.
	Addr string
	// Token is sent as "Authorization: Bearer <token>" when set: the
	// content of the gateway's admin.tokenFile (ReadTokenFile).
	Token string
	// HTTP sends the requests. Default http.DefaultClient.
	HTTP *http.Client
}

// FetchStatus reads /v1/status from a gateway's admin address (host:port
// or URL) without a token.
func FetchStatus(ctx context.Context, admin string) (Status, error) {
	return Client{Addr: admin}.Status(ctx)
}

// Status reads /v1/status.
func (c Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Keys reads the fingerprints of the installed gossip keys.
func (c Client) Keys(ctx context.Context) (KeyList, error) {
	var kl KeyList
	err := c.call(ctx, http.MethodGet, "/v1/keys", nil, &kl)
	return kl, err
}

// KeyOp asks the gateway to apply a gossip key operation federation-wide.
func (c Client) KeyOp(ctx context.Context, op, key string) (KeyOpResult, error) {
	var res KeyOpResult
	err := c.call(ctx, http.MethodPost, "/v1/keys/"+op, map[string]string{"key": key}, &res)
	return res, err
}

// Policy reads the policy in force and compiles it under the file name
// the gateway has for it, so rule positions read as they do in the
// gateway's own audit trail.
func (c Client) Policy(ctx context.Context) (*sovereignty.Engine, uint64, error) {
	resp, url, err := c.send(ctx, http.MethodGet, "/v1/residency/policy", nil)
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", c.Addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, sovereignty.MaxFileBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", c.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("policy from %s: %s: %s", c.Addr, resp.Status, strings.TrimSpace(string(body)))
	}
	version, _ := strconv.ParseUint(resp.Header.Get("X-Strait-Policy-Version"), 10, 64)
	name := resp.Header.Get("X-Strait-Policy-File")
	if name == "" {
		name = url
	}
	eng, err := sovereignty.Compile(name, body)
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", c.Addr, err)
	}
	return eng, version, nil
}

// call sends one JSON request. Errors carry the gateway's own message.
func (c Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, _, err := c.send(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &StatusError{Addr: c.Addr, Method: method, Path: path, Code: resp.StatusCode, Msg: strings.TrimSpace(string(msg))}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("admin API at %s: decode %s: %w", c.Addr, path, err)
	}
	return nil
}

// StatusError is an answer of the admin API other than 200 OK.
type StatusError struct {
	Addr, Method, Path string
	Code               int
	Msg                string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("admin API at %s: %s %s: %s", e.Addr, e.Method, e.Path, e.Msg)
}

// send sends one request for path with the token and, with a body, its
// JSON content type. It returns the response, whose body the caller
// closes, and the URL it asked.
func (c Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, string, error) {
	url := c.Addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, url, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	return resp, url, err
}
