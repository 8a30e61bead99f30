package gitsource_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
)

func readFile(t *testing.T, src *gitsource.Source, commit, name string) (string, error) {
	t.Helper()
	fsys, err := src.FS(t.Context(), commit)
	if err != nil {
		return "", err
	}
	data, err := fs.ReadFile(fsys, name)
	return string(data), err
}

// TestHTTPHeadIsOneRequest checks the poll path: Head is one ref
// advertisement and downloads nothing.
func TestHTTPHeadIsOneRequest(t *testing.T) {
	r, first := newRemote(t)
	src, ct := r.open(t, nil)
	for range 3 {
		ct.n.Store(0)
		head, err := src.Head(t.Context())
		if err != nil || head != first {
			t.Fatalf("Head = %q, %v; want %q", head, err, first)
		}
		if n := ct.n.Load(); n != 1 {
			t.Fatalf("Head sent %d HTTP requests; want 1", n)
		}
	}
	// Nothing was downloaded: the commit is not in the cache yet.
	if _, err := src.FS(t.Context(), first); !errors.Is(err, gitsource.ErrCommitNotFound) {
		t.Fatalf("FS before Fetch = %v; want ErrCommitNotFound", err)
	}
}

func TestHTTPFetchThenFS(t *testing.T) {
	r, first := newRemote(t)
	src, ct := r.open(t, nil)

	ct.n.Store(0)
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if n := ct.n.Load(); n != 2 {
		t.Errorf("first Fetch sent %d requests; want 2 (ref advertisement, pack)", n)
	}
	if got, err := readFile(t, src, first, "workflows/first.json"); err != nil || got != workflowJSON("in-first", "out-first") {
		t.Fatalf("first.json = %q, %v", got, err)
	}

	// Nothing new: one ref advertisement, no pack request.
	ct.n.Store(0)
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch with nothing new: %v", err)
	}
	if n := ct.n.Load(); n != 1 {
		t.Errorf("Fetch with nothing new sent %d requests; want 1", n)
	}

	// A new commit: Head moves, Fetch brings it, FS shows the new file.
	second := r.push(t, map[string]string{"workflows/second.json": workflowJSON("in-second", "out-second")}, "second")
	if head, err := src.Head(t.Context()); err != nil || head != second {
		t.Fatalf("Head after push = %q, %v; want %q", head, err, second)
	}
	if _, err := src.FS(t.Context(), second); !errors.Is(err, gitsource.ErrCommitNotFound) {
		t.Fatalf("FS(new commit) before Fetch = %v; want ErrCommitNotFound", err)
	}
	ct.n.Store(0)
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if n := ct.n.Load(); n != 2 {
		t.Errorf("Fetch of a new commit sent %d requests; want 2", n)
	}
	if got, err := readFile(t, src, second, "workflows/second.json"); err != nil || got != workflowJSON("in-second", "out-second") {
		t.Fatalf("second.json = %q, %v", got, err)
	}
	changed, err := src.ChangedFiles(t.Context(), first, second)
	if err != nil || !slices.Equal(changed, []string{"workflows/second.json"}) {
		t.Fatalf("ChangedFiles = %v, %v", changed, err)
	}

	// The cache outlives the Source: a new one on the same directory reads
	// the commit without fetching.
	cacheDir := t.TempDir()
	a, _ := r.open(t, func(o *gitsource.Options) { o.CacheDir = cacheDir })
	if err := a.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, ct2 := r.open(t, func(o *gitsource.Options) { o.CacheDir = cacheDir })
	if got, err := readFile(t, b, second, "workflows/first.json"); err != nil || got == "" {
		t.Fatalf("reopened cache: %q, %v", got, err)
	}
	if n := ct2.n.Load(); n != 0 {
		t.Errorf("reading a cached commit sent %d requests", n)
	}
}

func TestHTTPForcePush(t *testing.T) {
	r, first := newRemote(t)
	src, _ := r.open(t, nil)
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Rewrite history: main now points at an unrelated root commit.
	git(t, r.work, "checkout", "-q", "--orphan", "rewritten")
	git(t, r.work, "rm", "-q", "-rf", ".")
	rewritten := r.push(t, map[string]string{"workflows/other.json": workflowJSON("in-o", "out-o")}, "rewritten")

	head, err := src.Head(t.Context())
	if err != nil || head != rewritten {
		t.Fatalf("Head after force-push = %q, %v; want %q", head, err, rewritten)
	}
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch after force-push: %v", err)
	}
	fsys, err := src.FS(t.Context(), head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(fsys, "workflows/first.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("first.json after the rewrite: %v; want not exist", err)
	}
	if _, err := fs.Stat(fsys, "workflows/other.json"); err != nil {
		t.Errorf("other.json after the rewrite: %v", err)
	}
	// The old commit stays readable (it is what is deployed until the next pass).
	if _, err := readFile(t, src, first, "workflows/first.json"); err != nil {
		t.Errorf("old commit after the rewrite: %v", err)
	}
	// The cache's branch follows the rewrite.
	if _, err := readFile(t, src, "main", "workflows/other.json"); err != nil {
		t.Errorf("cache branch after the rewrite: %v", err)
	}
}

func TestHTTPPullRequests(t *testing.T) {
	r, first := newRemote(t)
	pr1 := commit(t, r.work, map[string]string{"workflows/pr1.json": workflowJSON("in-pr1", "out-pr1")}, "pr1")
	git(t, r.work, "push", "-q", "origin", "HEAD:refs/heads/tmp-pr1")
	git(t, r.work, "reset", "-q", "--hard", first)
	pr2 := commit(t, r.work, map[string]string{"workflows/pr2.json": workflowJSON("in-pr2", "out-pr2")}, "pr2")
	git(t, r.work, "push", "-q", "origin", "HEAD:refs/heads/tmp-pr2")
	// Pull request heads as GitHub and Gitea advertise them.
	git(t, r.bare, "update-ref", "refs/pull/1/head", pr1)
	git(t, r.bare, "update-ref", "refs/pull/2/head", pr2)
	git(t, r.bare, "update-ref", "refs/pull/10/head", pr1)
	git(t, r.bare, "update-ref", "-d", "refs/heads/tmp-pr1")
	git(t, r.bare, "update-ref", "-d", "refs/heads/tmp-pr2")

	src, ct := r.open(t, nil)
	ct.n.Store(0)
	st, err := src.Refs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []gitsource.PullRequest{{1, pr1}, {2, pr2}, {10, pr1}}
	if st.Head != first || !slices.Equal(st.PullRequests, want) {
		t.Fatalf("Refs = %+v; want head %s and %v", st, first, want)
	}
	if n := ct.n.Load(); n != 1 {
		t.Errorf("Refs sent %d requests; want 1", n)
	}
	if prs, err := src.PullRequests(t.Context()); err != nil || !slices.Equal(prs, want) {
		t.Fatalf("PullRequests = %v, %v", prs, err)
	}

	if err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ rev, file string }{{pr1, "workflows/pr1.json"}, {pr2, "workflows/pr2.json"}, {"pull/2/head", "workflows/pr2.json"}} {
		if _, err := readFile(t, src, tc.rev, tc.file); err != nil {
			t.Errorf("%s at %s: %v", tc.file, tc.rev, err)
		}
	}

	// A closed pull request whose ref is gone leaves the cache's refs too.
	git(t, r.bare, "update-ref", "-d", "refs/pull/2/head")
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := src.FS(t.Context(), "pull/2/head"); !errors.Is(err, gitsource.ErrCommitNotFound) {
		t.Errorf("FS(pull/2/head) after the ref went: %v; want ErrCommitNotFound", err)
	}
}

func TestHTTPBranchDeleted(t *testing.T) {
	r, first := newRemote(t)
	git(t, r.bare, "update-ref", "refs/pull/3/head", first)
	src, _ := r.open(t, nil)
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	git(t, r.bare, "update-ref", "-d", "refs/heads/main")

	if _, err := src.Head(t.Context()); !errors.Is(err, gitsource.ErrBranchNotFound) || !strings.Contains(err.Error(), "main") {
		t.Errorf("Head = %v; want ErrBranchNotFound naming main", err)
	}
	if err := src.Fetch(t.Context()); !errors.Is(err, gitsource.ErrBranchNotFound) {
		t.Errorf("Fetch = %v; want ErrBranchNotFound", err)
	}
	if prs, err := src.PullRequests(t.Context()); err != nil || len(prs) != 1 {
		t.Errorf("PullRequests without the branch = %v, %v; want the one", prs, err)
	}

	// With no refs at all the server advertises an empty repository.
	git(t, r.bare, "update-ref", "-d", "refs/pull/3/head")
	if _, err := src.Head(t.Context()); !errors.Is(err, gitsource.ErrBranchNotFound) {
		t.Errorf("Head of an empty repository = %v; want ErrBranchNotFound", err)
	}
	if _, err := readFile(t, src, first, "workflows/first.json"); err != nil {
		t.Errorf("cached commit after the branch went: %v", err)
	}
}

func TestHTTPRepositoryNotFound(t *testing.T) {
	r, _ := newRemote(t)
	src, _ := r.open(t, func(o *gitsource.Options) { o.URL = r.srv.URL + "/missing.git" })
	if _, err := src.Head(t.Context()); !errors.Is(err, gitsource.ErrRepositoryNotFound) {
		t.Fatalf("Head = %v; want ErrRepositoryNotFound", err)
	}
}

func TestHTTPServerDown(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		r, _ := newRemote(t)
		src, _ := r.open(t, func(o *gitsource.Options) { o.Timeout = 5 * time.Second })
		r.srv.Close()
		start := time.Now()
		_, err := src.Head(t.Context())
		if err == nil {
			t.Fatal("Head against a stopped server succeeded")
		}
		if err := src.Fetch(t.Context()); err == nil {
			t.Fatal("Fetch against a stopped server succeeded")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("errors took %s; want well within the timeout", d)
		}
		t.Logf("stopped server: %v", err)
	})
	t.Run("hanging", func(t *testing.T) {
		// Accepts connections and never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns sync.WaitGroup
		conns.Go(func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		})
		t.Cleanup(func() { l.Close(); conns.Wait() })

		const timeout = 300 * time.Millisecond
		src, err := gitsource.Open(t.Context(), gitsource.Options{URL: "http://" + l.Addr().String() + "/repo.git", CacheDir: t.TempDir(), Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		for name, call := range map[string]func() error{
			"Head":  func() error { _, err := src.Head(t.Context()); return err },
			"Fetch": func() error { return src.Fetch(t.Context()) },
		} {
			start := time.Now()
			err := call()
			if d := time.Since(start); d > timeout+2*time.Second {
				t.Errorf("%s took %s; want about %s", name, d, timeout)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s = %v; want context.DeadlineExceeded", name, err)
			}
		}
	})
}

func TestHTTPCredentialsNeverInErrors(t *testing.T) {
	const token = "tok-s3cr3t-123"
	requireToken := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if user, pass, ok := req.BasicAuth(); !ok || user != "x-access-token" || pass != token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, req)
		})
	}
	r, first := newRemote(t)
	authed := newGitServer(t, r.srv.root, requireToken)
	url := authed.URL + "/repo.git"

	// The right token is sent, as basic auth.
	src, _ := r.open(t, func(o *gitsource.Options) { o.URL = url; o.Token = secret.New(token) })
	if head, err := src.Head(t.Context()); err != nil || head != first {
		t.Fatalf("Head with the token = %q, %v", head, err)
	}
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch with the token: %v", err)
	}

	secrets := []string{token, "wr0ng-t0ken", "pa55word", "tokenasuser"}
	check := func(name string, err error, want error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s succeeded", name)
		}
		t.Logf("%s: %v", name, err)
		if want != nil && !errors.Is(err, want) {
			t.Errorf("%s = %v; want %v", name, err, want)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s error shows a credential: %v", name, err)
			}
		}
	}
	wrong, _ := r.open(t, func(o *gitsource.Options) { o.URL = url; o.Token = secret.New("wr0ng-t0ken") })
	_, err := wrong.Head(t.Context())
	check("Head with a wrong token", err, gitsource.ErrAuthFailed)
	check("Fetch with a wrong token", wrong.Fetch(t.Context()), gitsource.ErrAuthFailed)

	inURL, _ := r.open(t, func(o *gitsource.Options) {
		o.URL = strings.Replace(url, "http://", "http://bot:pa55word@", 1)
	})
	check("Fetch with credentials in the URL", inURL.Fetch(t.Context()), gitsource.ErrAuthFailed)
	userOnly, _ := r.open(t, func(o *gitsource.Options) {
		o.URL = strings.Replace(url, "http://", "http://tokenasuser@", 1)
	})
	check("Fetch with a token as the URL's user", userOnly.Fetch(t.Context()), gitsource.ErrAuthFailed)

	// A server that is gone: the transport error carries the URL.
	authed.Close()
	check("Fetch against a stopped server", src.Fetch(t.Context()), nil)
	_, err = inURL.Head(t.Context())
	check("Head against a stopped server", err, nil)
}

// TestConcurrentReadsDuringFetch reads a commit from several goroutines
// while fetches add commits to the same cache (run with -race).
func TestConcurrentReadsDuringFetch(t *testing.T) {
	r, first := newRemote(t)
	src, _ := r.open(t, nil)
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	fsys, err := src.FS(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			for range 20 {
				err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					if _, err := d.Info(); err != nil {
						return err
					}
					_, err = fs.ReadFile(fsys, p)
					return err
				})
				if err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	for i := range 3 {
		r.push(t, map[string]string{"workflows/w" + strconv.Itoa(i) + ".json": workflowJSON("i", "o")}, "more")
		if err := src.Fetch(t.Context()); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkHeadNoChange measures the poll path against git http-backend:
// one ref advertisement per Head, reported as git_requests/op.
func BenchmarkHeadNoChange(b *testing.B) {
	r, first := newRemote(b)
	src, ct := r.open(b, nil)
	if err := src.Fetch(b.Context()); err != nil {
		b.Fatal(err)
	}
	ct.n.Store(0)
	ops := 0
	for b.Loop() {
		head, err := src.Head(b.Context())
		if err != nil || head != first {
			b.Fatalf("Head = %q, %v", head, err)
		}
		ops++
	}
	b.ReportMetric(float64(ct.n.Load())/float64(ops), "git_requests/op")
}
