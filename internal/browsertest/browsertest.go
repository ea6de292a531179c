// Package browsertest runs pages in a real headless Chromium for tests:
// Chromium starts a fresh browser and returns a chromedp context on it, and
// WatchConsole collects what the page reports as wrong (console errors,
// uncaught exceptions, log entries of level error).
//
// Chromium is Debian's package. When /usr/bin/chromium is missing and the
// test runs as root (as on the project's machines and in CI), Chromium
// installs it with apt-get, waiting out another installer's dpkg lock; when
// it cannot, the test fails: a browser test never skips.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Path is where Debian's chromium package puts the browser.
const Path = "/usr/bin/chromium"

// Timeout bounds a test's whole use of its browser.
const Timeout = 90 * time.Second

// Chromium starts a headless Chromium with a fresh profile for t and
// returns a chromedp context on its first tab. The browser is closed, and
// its profile removed, when t ends; the context ends after Timeout.
func Chromium(t testing.TB) context.Context {
	t.Helper()
	if err := ensureChromium(t); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Path),
		chromedp.Headless,
		chromedp.NoSandbox, // as root, and in containers without user namespaces
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), Timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// Console is what the pages of one browser context reported as wrong.
type Console struct {
	mu   sync.Mutex
	errs []string
}

// WatchConsole starts collecting, from the pages of ctx (a context from
// Chromium), console.error and console.assert calls, uncaught exceptions,
// and log entries of level error (failed loads, CSP violations). Call it
// before navigating.
func WatchConsole(t testing.TB, ctx context.Context) *Console {
	t.Helper()
	c := &Console{}
	// chromedp enables the Runtime and Log domains on every target.
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					if len(a.Value) > 0 {
						args = append(args, string(a.Value))
					} else {
						args = append(args, a.Description)
					}
				}
				c.add("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			c.add("exception at %s:%d: %s", d.URL, d.LineNumber, msg)
		case *log.EventEntryAdded:
			if e := ev.Entry; e.Level == log.EntryLevelError {
				c.add("log %s: %s (%s)", e.Source, e.Text, e.URL)
			}
		}
	})
	if err != nil {
		t.Fatalf("watch console: %v", err)
	}
	return c
}

func (c *Console) add(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Sprintf(format, a...))
}

// Errors returns what was collected so far.
func (c *Console) Errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// install serializes installs by the tests of one process; other
// processes are waited out through dpkg's lock.
var install sync.Mutex

func ensureChromium(t testing.TB) error {
	install.Lock()
	defer install.Unlock()
	if _, err := os.Stat(Path); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is missing and only root can install it: apt-get install chromium", Path)
	}
	t.Logf("%s is missing: installing Debian's chromium", Path)
	if err := aptGet(t, "update"); err != nil {
		return err
	}
	if err := aptGet(t, "install", "-y", "--no-install-recommends", "chromium", "fonts-liberation"); err != nil {
		return err
	}
	if _, err := os.Stat(Path); err != nil {
		return fmt.Errorf("apt-get installed chromium but %s is missing", Path)
	}
	return nil
}

// aptGet runs apt-get, retrying while another apt or dpkg holds the lock.
func aptGet(t testing.TB, args ...string) error {
	const tries = 30
	var out []byte
	var err error
	for i := 0; i < tries; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err = cmd.CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		if !strings.Contains(string(out), "lock") {
			break
		}
		t.Logf("apt-get %s: another install holds the lock; retrying", args[0])
		time.Sleep(10 * time.Second) // waits for another process, not for this test's own work
	}
	return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
}
