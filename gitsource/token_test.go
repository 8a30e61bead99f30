package gitsource_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
)

// tokenIssuer plays a forge whose tokens are renewed: the git server
// accepts only the current token, and the source hands out whichever
// token the issuer holds when asked.
type tokenIssuer struct {
	mu      sync.Mutex
	current string
	issued  []string
	calls   int
	fail    error // returned by the source instead of a token
	stale   bool  // the source keeps handing out the first token
	empty   bool  // the source hands out an empty token
	users   []string
	noDeadl int // calls whose context had no deadline
}

func (ti *tokenIssuer) rotate() {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.current = "tok-" + strconv.Itoa(len(ti.issued)) + "-s3cr3t"
	ti.issued = append(ti.issued, ti.current)
}

func (ti *tokenIssuer) source(ctx context.Context) (secret.Value, error) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.calls++
	if _, ok := ctx.Deadline(); !ok {
		ti.noDeadl++
	}
	switch {
	case ti.fail != nil:
		return secret.Value{}, ti.fail
	case ti.empty:
		return secret.Value{}, nil
	case ti.stale:
		return secret.New(ti.issued[0]), nil
	}
	return secret.New(ti.current), nil
}

func (ti *tokenIssuer) callCount() int { ti.mu.Lock(); defer ti.mu.Unlock(); return ti.calls }

// require lets through only requests with the current token as the basic-auth password.
func (ti *tokenIssuer) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		ti.mu.Lock()
		cur := ti.current
		if ok {
			ti.users = append(ti.users, user)
		}
		ti.mu.Unlock()
		if !ok || pass != cur {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// TestHTTPTokenSource checks that a TokenSource is asked before every remote
// operation, so a renewed token is sent as soon as the source has it, and
// that no token reaches an error or the cache on disk.
func TestHTTPTokenSource(t *testing.T) {
	ti := &tokenIssuer{}
	ti.rotate()
	r, first := newRemote(t)
	srv := newGitServer(t, r.srv.root, ti.require)
	url := srv.URL + "/repo.git"
	cacheDir := t.TempDir()
	src, ct := r.open(t, func(o *gitsource.Options) { o.URL = url; o.CacheDir = cacheDir; o.TokenSource = ti.source })

	// One call per operation: Head, Refs and PullRequests list refs once;
	// a Fetch's ref listing and pack request share one session.
	if head, err := src.Head(t.Context()); err != nil || head != first {
		t.Fatalf("Head = %q, %v; want %q", head, err, first)
	}
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if _, err := src.PullRequests(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := ti.callCount(); n != 3 {
		t.Errorf("the token source was called %d times for Head, Fetch and PullRequests; want 3", n)
	}

	// The token is renewed: the server accepts only the new one, which the
	// next operation sends.
	ti.rotate()
	second := r.push(t, map[string]string{"workflows/second.json": workflowJSON("in-2", "out-2")}, "second")
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch after the token was renewed: %v", err)
	}
	if got, err := readFile(t, src, second, "workflows/second.json"); err != nil || got == "" {
		t.Fatalf("second.json after the renewal: %q, %v", got, err)
	}
	ti.mu.Lock()
	users, noDeadline := append([]string(nil), ti.users...), ti.noDeadl
	ti.mu.Unlock()
	for _, u := range users {
		if u != "x-access-token" {
			t.Errorf("basic-auth user %q; want x-access-token", u)
		}
	}
	if noDeadline != 0 {
		t.Errorf("%d calls of the token source had no deadline; want the operation's Timeout", noDeadline)
	}

	secrets := append([]string(nil), ti.issued...)
	check := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s = %v; want %v", name, err, want)
		}
		for _, s := range secrets {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("%s error shows a token: %v", name, err)
			}
		}
	}

	// A source that still hands out the old token: the server refuses it,
	// so the success above needed the renewed one.
	ti.stale = true
	_, err := src.Head(t.Context())
	check("Head with a stale token", err, gitsource.ErrAuthFailed)
	ti.stale = false

	// The source's token wins over credentials in the URL, as Token does.
	inURL, _ := r.open(t, func(o *gitsource.Options) {
		o.URL = strings.Replace(url, "http://", "http://bot:pa55word@", 1)
		o.TokenSource = ti.source
	})
	if _, err := inURL.Head(t.Context()); err != nil {
		t.Errorf("Head with a token source and credentials in the URL: %v", err)
	}

	// Without any token the server refuses too.
	anon, _ := r.open(t, func(o *gitsource.Options) { o.URL = url })
	check("anonymous Fetch", anon.Fetch(t.Context()), gitsource.ErrAuthFailed)

	// A failing source fails the operation before any request.
	exchange := errors.New("github app 1 installation 2: the token exchange was refused")
	ti.fail = exchange
	ct.n.Store(0)
	_, err = src.Head(t.Context())
	check("Head with a failing source", err, gitsource.ErrTokenSource)
	check("Head with a failing source", err, exchange)
	check("Fetch with a failing source", src.Fetch(t.Context()), gitsource.ErrTokenSource)
	if n := ct.n.Load(); n != 0 {
		t.Errorf("a failing token source still sent %d requests", n)
	}
	ti.fail = nil
	ti.empty = true
	check("Fetch with an empty token", src.Fetch(t.Context()), gitsource.ErrTokenSource)
	ti.empty = false

	// No token is written to the cache: not to its config, nor anywhere.
	var configs, files int
	err = filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if d.Name() == "config" {
			configs++
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds a token", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk read the bare clone: its config and the fetched objects.
	if configs != 1 || files < 3 {
		t.Errorf("the cache has %d config files and %d files; want 1 and the fetched objects", configs, files)
	}
}
