package status_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/status"
)

// fixture is a fresh Gitea repository with one commit.
type fixture struct {
	srv    *testenv.GiteaServer
	repo   string // name
	commit string // main's commit
	logs   *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := testenv.Gitea(t)
	repo := testenv.UniqueName(t)
	srv.CreateRepo(t, repo)
	return &fixture{srv: srv, repo: repo, commit: srv.BranchCommit(t, repo, "main"), logs: &syncBuffer{}}
}

// client returns a status.GitHub for the fixture's repository at apiURL
// (the server's when empty) that sends through rt (when not nil) and logs
// everything into f.logs.
func (f *fixture) client(t *testing.T, apiURL string, rt http.RoundTripper) *status.GitHub {
	t.Helper()
	if apiURL == "" {
		apiURL = f.srv.APIURL
	}
	o := status.Options{
		APIURL: apiURL,
		Repo:   f.srv.RepoName(f.repo),
		Token:  secret.New(f.srv.Token),
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if rt != nil {
		o.HTTPClient = &http.Client{Transport: rt}
	}
	g, err := status.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// serverStatus is a status as the server lists it.
type serverStatus struct {
	Context     string `json:"context"`
	State       string `json:"state"`
	Status      string `json:"status"` // Gitea's name for state
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
}

// statuses reads every status of the fixture's commit from Gitea, newest
// first, without going through package status.
func (f *fixture) statuses(t *testing.T) []serverStatus {
	t.Helper()
	var all []serverStatus
	for page := 1; ; page++ {
		var list []serverStatus
		f.srv.API(t, http.MethodGet, fmt.Sprintf("repos/%s/%s/commits/%s/statuses?limit=50&page=%d", f.srv.User, f.repo, f.commit, page), nil, &list)
		if len(list) == 0 {
			return all
		}
		for _, s := range list {
			if s.State == "" {
				s.State = s.Status
			}
			all = append(all, s)
		}
	}
}

// countOf returns how many statuses of context ctx the commit has.
func (f *fixture) countOf(t *testing.T, ctx string) int {
	t.Helper()
	n := 0
	for _, s := range f.statuses(t) {
		if s.Context == ctx {
			n++
		}
	}
	return n
}

// checkNoToken fails if the token is anywhere in texts or in the logs.
func (f *fixture) checkNoToken(t *testing.T, texts ...string) {
	t.Helper()
	for i, s := range append(texts, f.logs.String()) {
		if strings.Contains(s, f.srv.Token) {
			t.Errorf("text %d holds the token", i) // never print the text itself
		}
	}
}

// counter is a RoundTripper that counts requests by method.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[r.Method]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestPostOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	var calls counter
	g := f.client(t, "", &calls)
	s := status.Status{
		Commit:      f.commit,
		Context:     status.WorkflowContext("foo"),
		State:       status.Success,
		Description: status.DeployedDescription("in", "out"),
		TargetURL:   status.ConsoleURL("us-east-1", "out"),
	}

	posted, err := g.Post(ctx, s)
	if err != nil || !posted {
		t.Fatalf("first Post = %v, %v; want true, nil", posted, err)
	}
	got := f.statuses(t)
	if len(got) != 1 || got[0].Context != s.Context || got[0].State != "success" ||
		got[0].Description != s.Description || got[0].TargetURL != s.TargetURL {
		t.Fatalf("server has %v, want just %+v", got, s)
	}
	if calls.get(http.MethodPost) != 1 || calls.get(http.MethodGet) != 1 {
		t.Errorf("first Post made %v requests, want one read and one POST", calls.calls)
	}

	calls.reset()
	if posted, err := g.Post(ctx, s); err != nil || posted {
		t.Errorf("same Post again = %v, %v; want false, nil", posted, err)
	}
	if calls.get(http.MethodPost)+calls.get(http.MethodGet) != 0 {
		t.Errorf("same Post again made requests %v, want none", calls.calls)
	}

	// A restarted agent reads what is there and does not post it again.
	var calls2 counter
	restarted := f.client(t, "", &calls2)
	if posted, err := restarted.Post(ctx, s); err != nil || posted {
		t.Errorf("Post after restart = %v, %v; want false, nil", posted, err)
	}
	if calls2.get(http.MethodPost) != 0 || calls2.get(http.MethodGet) != 1 {
		t.Errorf("Post after restart made requests %v, want one read", calls2.calls)
	}

	// Any change is posted, by either client; the other context is not
	// touched.
	changes := []func(*status.Status){
		func(s *status.Status) { s.Description = status.DeployedDescription("in", "out2") },
		func(s *status.Status) { s.TargetURL = status.ConsoleURL("us-east-1", "out2") },
		func(s *status.Status) { s.TargetURL = "" },
		func(s *status.Status) { s.State = status.Failure },
	}
	for i, change := range changes {
		change(&s)
		c := g
		if i%2 == 1 {
			c = restarted
		}
		if posted, err := c.Post(ctx, s); err != nil || !posted {
			t.Errorf("change %d: Post = %v, %v; want true, nil", i, posted, err)
		}
	}
	if n := f.countOf(t, s.Context); n != 1+len(changes) {
		t.Errorf("%d statuses of %s, want %d", n, s.Context, 1+len(changes))
	}
	f.checkNoToken(t)
}

func TestPostCutsAndRedactsDescription(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	g := f.client(t, "", nil)
	s := status.Status{
		Commit:      f.commit,
		Context:     status.PlanContext,
		State:       status.Error,
		Description: "clone with " + f.srv.Token + " failed: " + strings.Repeat("é", 200),
	}
	if posted, err := g.Post(t.Context(), s); err != nil || !posted {
		t.Fatalf("Post = %v, %v", posted, err)
	}
	got := f.statuses(t)[0].Description
	if !strings.HasPrefix(got, "clone with [redacted] failed: éé") || !strings.HasSuffix(got, "é…") ||
		len([]rune(got)) != status.MaxDescription {
		t.Errorf("posted description %q, want the token redacted and %d runes", got, status.MaxDescription)
	}
	// What the server holds is what Post compares with: no second post.
	if posted, err := f.client(t, "", nil).Post(t.Context(), s); err != nil || posted {
		t.Errorf("same Post from a new client = %v, %v; want false, nil", posted, err)
	}
	f.checkNoToken(t, got)
}

func TestPostConcurrent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	g := f.client(t, "", nil)
	same := status.Status{Commit: f.commit, Context: status.PlanContext, State: status.Pending, Description: "planning"}
	var posted atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			s := same
			if i%2 == 1 {
				// Other contexts on the same commit go through too.
				s.Context = status.RunContext(strconv.Itoa(i))
			}
			ok, err := g.Post(t.Context(), s)
			if err != nil {
				t.Error(err)
			}
			if ok && s.Context == same.Context {
				posted.Add(1)
			}
		})
	}
	wg.Wait()
	if posted.Load() != 1 || f.countOf(t, same.Context) != 1 {
		t.Errorf("8 concurrent identical Posts: %d said posted, server has %d; want 1, 1", posted.Load(), f.countOf(t, same.Context))
	}
	if n := len(f.statuses(t)); n != 9 {
		t.Errorf("server has %d statuses, want 9", n)
	}
}

func TestPostReadsEveryContext(t *testing.T) {
	t.Parallel()
	// More contexts than a page holds (Gitea gives at most 50), so the
	// read after a restart must follow the pages.
	f := newFixture(t)
	const n = 75
	statuses := make([]status.Status, n)
	for i := range statuses {
		statuses[i] = status.Status{Commit: f.commit, Context: status.RunContext(strconv.Itoa(i)), State: status.Success, Description: status.RunDescription(i, 0, "")}
	}
	postAll := func(g *status.GitHub, want bool) {
		var wg sync.WaitGroup
		work := make(chan status.Status)
		for range 8 {
			wg.Go(func() {
				for s := range work {
					if posted, err := g.Post(t.Context(), s); err != nil || posted != want {
						t.Errorf("Post %s = %v, %v; want %v, nil", s.Context, posted, err, want)
					}
				}
			})
		}
		for _, s := range statuses {
			work <- s
		}
		close(work)
		wg.Wait()
	}
	postAll(f.client(t, "", nil), true)

	var calls counter
	postAll(f.client(t, "", &calls), false)
	if calls.get(http.MethodPost) != 0 || calls.get(http.MethodGet) < 2 {
		t.Errorf("restarted client made %v requests; want no POST and a read of every page", calls.calls)
	}
}

// proxy is an httptest server in front of Gitea that lets fault answer a
// request instead (when it returns true) and counts the status POSTs.
type proxy struct {
	*httptest.Server
	posts atomic.Int32
}

func newProxy(t *testing.T, target string, fault func(w http.ResponseWriter, r *http.Request, post int) bool) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // a request cancelled on purpose is no news
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/statuses/") {
			if fault(w, r, int(p.posts.Add(1))) {
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func TestPostWaitsOutLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		fault     func(w http.ResponseWriter)
		faults    int           // how many POSTs fail
		atLeast   time.Duration // how long Post must wait
		wantPosts int32
	}{
		{"primary rate limit", func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Limit", "5000")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"message":"API rate limit exceeded"}`)
		}, 1, 0, 2},
		{"secondary rate limit", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"message":"You have exceeded a secondary rate limit","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`)
		}, 1, time.Second, 2},
		{"429", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}, 1, time.Second, 2},
		{"server errors", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadGateway)
		}, 2, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			p := newProxy(t, f.srv.URL, func(w http.ResponseWriter, r *http.Request, post int) bool {
				if post > tc.faults {
					return false
				}
				tc.fault(w)
				return true
			})
			g := f.client(t, p.URL+"/api/v1/", nil)
			s := status.Status{Commit: f.commit, Context: status.PlanContext, State: status.Success, Description: status.PlanDescription(1, 0, 0)}
			start := time.Now()
			posted, err := g.Post(t.Context(), s)
			if err != nil || !posted {
				t.Fatalf("Post = %v, %v; want true, nil", posted, err)
			}
			if d := time.Since(start); d < tc.atLeast {
				t.Errorf("Post returned after %v, before the server allowed (%v)", d, tc.atLeast)
			}
			if p.posts.Load() != tc.wantPosts {
				t.Errorf("%d POSTs reached the proxy, want %d", p.posts.Load(), tc.wantPosts)
			}
			if got := f.statuses(t); len(got) != 1 || got[0].Description != s.Description {
				t.Errorf("server has %v, want the status once", got)
			}
			f.checkNoToken(t)
		})
	}
}

func TestPostGivesUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	t.Run("server errors", func(t *testing.T) {
		p := newProxy(t, f.srv.URL, func(w http.ResponseWriter, r *http.Request, post int) bool {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		})
		g := f.client(t, p.URL+"/api/v1/", nil)
		posted, err := g.Post(t.Context(), status.Status{Commit: f.commit, Context: "c", State: status.Success})
		var resp *github.ErrorResponse
		if posted || !errors.As(err, &resp) || resp.Response.StatusCode != http.StatusInternalServerError {
			t.Errorf("Post = %v, %v; want false and the 500", posted, err)
		}
		if n := p.posts.Load(); n != 4 {
			t.Errorf("%d attempts, want 4", n)
		}
	})
	t.Run("rate limit until ctx ends", func(t *testing.T) {
		p := newProxy(t, f.srv.URL, func(w http.ResponseWriter, r *http.Request, post int) bool {
			if post == 1 {
				return false
			}
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
			w.WriteHeader(http.StatusForbidden)
			return true
		})
		g := f.client(t, p.URL+"/api/v1/", nil)
		// A first status gets through and reads the commit's statuses, so
		// that the short deadline below is spent on the rate limit only.
		if _, err := g.Post(t.Context(), status.Status{Commit: f.commit, Context: "first", State: status.Success}); err != nil {
			t.Fatal(err)
		}
		// One Post waits out the limit for 3 seconds; a second Post of the
		// same context queues behind it and must give up with its own,
		// shorter deadline.
		s := status.Status{Commit: f.commit, Context: "c", State: status.Success}
		first := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			_, err := g.Post(ctx, s)
			first <- err
		}()
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		posted, err := g.Post(ctx, s)
		if posted || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("queued Post = %v, %v; want false and its deadline", posted, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("queued Post took %v, ignoring its 300ms deadline", d)
		}
		err = <-first
		var limit *github.RateLimitError
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &limit) {
			t.Errorf("rate-limited Post: %v; want the rate limit and the deadline", err)
		}
	})
	if n := f.countOf(t, "c"); n != 0 {
		t.Errorf("%d statuses made it", n)
	}
}

func TestTokenNeverShown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := status.Status{Commit: f.commit, Context: "c", State: status.Success}
	var texts []string

	// A bad token: the server refuses it.
	bad := "0123456789abcdef0123456789abcdef01234567"
	g, err := status.New(status.Options{APIURL: f.srv.APIURL, Repo: f.srv.RepoName(f.repo), Token: secret.New(bad)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Post(t.Context(), s)
	var resp *github.ErrorResponse
	if !errors.As(err, &resp) || resp.Response.StatusCode != http.StatusUnauthorized {
		t.Errorf("Post with a bad token: %v, want a 401", err)
	}
	if err != nil && strings.Contains(err.Error(), bad) {
		t.Errorf("error holds the bad token: %v", err)
	}

	// A server that echoes what it was sent, headers included.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"message":"bad request with %s"}`, r.Header.Get("Authorization"))
	}))
	defer echo.Close()
	_, err = f.client(t, echo.URL+"/", nil).Post(t.Context(), s)
	if err == nil || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("Post against an echoing server: %v, want an error with the token redacted", err)
	}
	texts = append(texts, fmt.Sprint(err))

	// Nothing listening.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err = f.client(t, closed.URL+"/api/v1/", nil).Post(t.Context(), s)
	if err == nil {
		t.Error("Post to a closed server succeeded")
	}
	texts = append(texts, fmt.Sprint(err))

	// The token in the URL, where it does not belong, and a URL that does
	// not parse.
	for _, raw := range []string{
		"http://bot:" + f.srv.Token + "@127.0.0.1/api/v1/",
		"http://127.0.0.1/api/v1/?token=" + f.srv.Token,
		"http://bot:" + f.srv.Token + "@[::1/api/v1/",
	} {
		_, err := status.New(status.Options{APIURL: raw, Repo: "bot/r", Token: secret.New(f.srv.Token)})
		if err == nil {
			t.Error("New accepted an API URL with a token in it")
		}
		texts = append(texts, fmt.Sprint(err))
	}
	f.checkNoToken(t, texts...)
}

func TestNewChecksOptions(t *testing.T) {
	token := secret.New("t")
	for _, tc := range []struct {
		name string
		o    status.Options
		ok   bool
	}{
		{"github.com by default", status.Options{Repo: "o/r", Token: token}, true},
		{"gitea", status.Options{APIURL: "http://127.0.0.1:3000/api/v1", Repo: "o/r", Token: token}, true},
		{"no token", status.Options{Repo: "o/r"}, false},
		{"no repo", status.Options{Token: token}, false},
		{"repo without owner", status.Options{Repo: "r", Token: token}, false},
		{"repo with two slashes", status.Options{Repo: "o/r/x", Token: token}, false},
		{"relative url", status.Options{APIURL: "/api/v1/", Repo: "o/r", Token: token}, false},
		{"ftp url", status.Options{APIURL: "ftp://h/", Repo: "o/r", Token: token}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := status.New(tc.o)
			if (err == nil) != tc.ok {
				t.Errorf("New(%+v) error = %v, want ok %v", tc.o, err, tc.ok)
			}
		})
	}
}

func TestPostRejectsInvalid(t *testing.T) {
	g, err := status.New(status.Options{APIURL: "http://127.0.0.1:1/", Repo: "o/r", Token: secret.New("t")})
	if err != nil {
		t.Fatal(err)
	}
	valid := status.Status{Commit: "abc", Context: "c", State: status.Success}
	for _, tc := range []struct {
		name   string
		change func(*status.Status)
	}{
		{"no commit", func(s *status.Status) { s.Commit = "" }},
		{"no context", func(s *status.Status) { s.Context = "" }},
		{"unknown state", func(s *status.Status) { s.State = "warning" }},
		{"relative target", func(s *status.Status) { s.TargetURL = "/x" }},
		{"javascript target", func(s *status.Status) { s.TargetURL = "javascript:alert(1)" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := valid
			tc.change(&s)
			// Nothing listens on port 1: an attempt to send would fail
			// differently.
			if posted, err := g.Post(t.Context(), s); posted || !errors.Is(err, status.ErrInvalid) {
				t.Errorf("Post(%+v) = %v, %v; want ErrInvalid", s, posted, err)
			}
		})
	}
}

func TestOpenPullRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	g := f.client(t, "", nil)
	prs, err := g.OpenPullRequests(t.Context())
	if err != nil || len(prs) != 0 {
		t.Fatalf("OpenPullRequests on a new repository = %v, %v", prs, err)
	}

	head := f.srv.CommitFiles(t, f.repo, testenv.ChangeFiles{NewBranch: "add-foo", Write: map[string]string{"workflows/foo.json": "{}\n"}})
	open := f.srv.CreatePullRequest(t, f.repo, "add-foo", "main", "Add foo")
	f.srv.CommitFiles(t, f.repo, testenv.ChangeFiles{NewBranch: "add-bar", Write: map[string]string{"workflows/bar.json": "{}\n"}})
	merged := f.srv.CreatePullRequest(t, f.repo, "add-bar", "main", "Add bar")
	f.srv.MergePullRequest(t, f.repo, merged)

	prs, err = g.OpenPullRequests(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []status.PullRequest{{Number: open, HeadSHA: head, HeadRef: "add-foo", BaseRef: "main"}}
	if fmt.Sprint(prs) != fmt.Sprint(want) {
		t.Errorf("OpenPullRequests = %+v, want %+v", prs, want)
	}
	f.checkNoToken(t)
}
