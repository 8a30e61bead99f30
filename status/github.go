// Package status reports what the agent did as GitHub commit statuses, through
// any server that speaks GitHub's status and pull-request API (GitHub,
// GitHub Enterprise, Gitea), without ever posting the same status twice.
package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"

	"github.com/cloudpipe/cloudpipe/internal/secret"
)

// State is the state of a commit status.
type State string

// The states GitHub accepts.
const (
	Pending State = "pending"
	Success State = "success"
	Failure State = "failure"
	Error   State = "error"
)

// Status is one commit status: the state of Context on Commit. Two statuses
// are the same when all their fields are.
type Status struct {
	Commit      string // full commit ID
	Context     string // e.g. WorkflowContext("foo"), PlanContext
	State       State
	Description string // at most MaxDescription runes; Post cuts longer ones
	TargetURL   string // optional absolute http(s) URL
}

// ErrInvalid is wrapped by the error Post returns for a status that no
// server would accept (no commit or context, an unknown state, a target URL
// that is not absolute http or https).
var ErrInvalid = errors.New("invalid status")

func (s Status) validate() error {
	switch {
	case s.Commit == "":
		return fmt.Errorf("%w: no commit", ErrInvalid)
	case s.Context == "":
		return fmt.Errorf("%w: no context", ErrInvalid)
	}
	switch s.State {
	case Pending, Success, Failure, Error:
	default:
		return fmt.Errorf("%w: state %q is not pending, success, failure or error", ErrInvalid, s.State)
	}
	if s.TargetURL != "" {
		u, err := url.Parse(s.TargetURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: target URL is not an absolute http(s) URL", ErrInvalid)
		}
	}
	return nil
}

// PullRequest is an open pull request: its number, the commit and branch
// it proposes and the branch it targets.
type PullRequest struct {
	Number  int
	HeadSHA string
	HeadRef string // branch name, without refs/heads/
	BaseRef string // branch name, without refs/heads/
}

// Options configure a GitHub client.
type Options struct {
	// APIURL is the API's base URL, e.g. https://api.github.com/ or, for
	// Gitea, http://127.0.0.1:3000/api/v1/. It is used as is: GitHub
	// Enterprise users pass https://HOST/api/v3/ themselves. Empty means
	// https://api.github.com/.
	APIURL string
	// Repo is the repository, owner/name.
	Repo string
	// Token authenticates every request. Exactly one of Token and App is
	// required (without either use Discard).
	Token secret.Value
	// App authenticates as an installation of a GitHub App instead of
	// Token: see App.
	App *App
	// HTTPClient sends the requests; nil means a client with a 30-second
	// timeout. Its Transport sees each request before the token is added.
	HTTPClient *http.Client
	// Logger receives a Debug record per API call and retry, an Info record
	// per posted status and a Warn record per rate-limit wait; nil discards
	// them.
	Logger *slog.Logger
}

// DefaultAPIURL is the API of github.com.
const DefaultAPIURL = "https://api.github.com/"

// requestTimeout bounds one API request; waits between retries are not
// counted.
const requestTimeout = 30 * time.Second

// maxCachedCommits bounds the memory of what was posted: the agent posts on
// a few commits per pass, so older ones are rarely touched again, and a
// forgotten commit costs one read, not a duplicate status.
const maxCachedCommits = 512

// GitHub posts commit statuses to one repository and lists its open pull
// requests. It remembers the latest status of each context it has posted or
// read, so it never posts an identical status twice; the first Post on a
// commit reads that commit's statuses from the server, so a restarted agent
// does not re-post either. Its methods are safe for concurrent use.
type GitHub struct {
	client      *github.Client
	owner, repo string
	token       secret.Value
	log         *slog.Logger

	// appClient reads the App itself with the App's own token (JWT);
	// nil unless Options.App is set.
	appClient *github.Client
	// installation holds the App installation's token (see
	// InstallationToken); nil unless Options.App is set.
	installation *ghinstallation.Transport
	comments     comments // the plan comments

	mu      sync.Mutex                 // guards commits and order
	commits map[string]*commitStatuses // by commit ID
	order   []string                   // commit IDs, oldest first, for eviction
}

// commitStatuses is what is known about the statuses of one commit.
type commitStatuses struct {
	// read is held by the Post that reads the commit's statuses from the
	// server, so that Posts arriving meanwhile wait for the answer instead
	// of reading too.
	read   ctxMutex
	loaded bool // guarded by read

	mu     sync.Mutex          // guards latest and posts
	latest map[string]Status   // by context
	posts  map[string]ctxMutex // by context; held through compare and create
}

// postLock returns the lock of context on the commit. Holding it through
// compare and create makes two concurrent Posts of the same status create
// it once; Posts of different contexts (each workflow has its own) do not
// wait for each other.
func (cs *commitStatuses) postLock(context string) ctxMutex {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	l, ok := cs.posts[context]
	if !ok {
		l = newCtxMutex()
		cs.posts[context] = l
	}
	return l
}

// ctxMutex is a mutex whose lock gives up when ctx ends: a Post queued
// behind one that waits out a rate limit must still honour its own ctx.
type ctxMutex chan struct{}

func newCtxMutex() ctxMutex { return make(ctxMutex, 1) }

func (m ctxMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m ctxMutex) unlock() { <-m }

func (cs *commitStatuses) get(context string) (Status, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	s, ok := cs.latest[context]
	return s, ok
}

func (cs *commitStatuses) set(s Status) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.latest[s.Context] = s
}

// New returns a client for o.Repo at o.APIURL. It makes no request. It
// fails if the repository is not owner/name, the URL is not an absolute
// http(s) URL or holds credentials, or there is no token.
func New(o Options) (*GitHub, error) {
	owner, name, ok := strings.Cut(o.Repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("new github client: repo %q is not owner/name", o.Repo)
	}
	switch {
	case o.Token.IsZero() && o.App == nil:
		return nil, errors.New("new github client: no token and no app (use status.Discard to skip statuses)")
	case !o.Token.IsZero() && o.App != nil:
		return nil, errors.New("new github client: both a token and an app: pass one")
	}
	base, err := parseAPIURL(o.APIURL)
	if err != nil {
		return nil, fmt.Errorf("new github client: %w", err)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: requestTimeout}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &GitHub{
		owner:   owner,
		repo:    name,
		token:   o.Token,
		log:     log.With("component", "status", "repo", o.Repo),
		commits: map[string]*commitStatuses{},
	}
	if o.App != nil {
		if g.client, g.appClient, g.installation, err = o.App.clients(hc, base); err != nil {
			return nil, fmt.Errorf("new github client: %w", err)
		}
	} else {
		g.client = github.NewClient(hc).WithAuthToken(o.Token.Reveal())
	}
	for _, c := range []*github.Client{g.client, g.appClient} {
		if c != nil {
			c.BaseURL = base // set directly: WithEnterpriseURLs would append /api/v3/
			c.UserAgent = "cloudpipe"
		}
	}
	return g, nil
}

// parseAPIURL checks an API base URL without echoing it in errors: a
// misplaced token in it must not reach a log.
func parseAPIURL(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultAPIURL
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("api url does not parse")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, errors.New("api url is not an absolute http(s) URL")
	case u.User != nil:
		return nil, errors.New("api url holds credentials: pass the token as the token")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("api url has a query or fragment")
	}
	if !strings.HasSuffix(u.Path, "/") {
		// go-github resolves paths against BaseURL and needs the slash.
		u.Path += "/"
	}
	return u, nil
}

// Post creates s on the server unless it is already the latest status of
// s.Context on s.Commit, as far as this GitHub knows: it knows what it
// posted, and reads a commit's latest statuses once, before its first Post
// on that commit. It reports whether it created a status. A description
// longer than MaxDescription runes is cut, and the token, should it appear
// in the description or target URL, is replaced by "[redacted]".
//
// A rate limit (403 or 429 with rate-limit headers, GitHub's secondary
// limit) is waited out, however often it comes, so Post may block until
// ctx ends and then returns ctx's error joined with the limit's. A 500,
// 502, 503 or 504 is retried with backoff, four tries in all. Other errors:
// ErrInvalid for a status no server would accept, and the server's answer,
// with the token removed, for anything else. Concurrent Posts of one
// status create it once.
func (g *GitHub) Post(ctx context.Context, s Status) (bool, error) {
	if err := s.validate(); err != nil {
		return false, fmt.Errorf("post status %s: %w", s.Context, err)
	}
	s.Description = cut(g.redact(s.Description))
	s.TargetURL = g.redact(s.TargetURL)

	cs := g.commit(s.Commit)
	if err := g.load(ctx, cs, s.Commit); err != nil {
		return false, fmt.Errorf("post status %s on %s: %w", s.Context, s.Commit, err)
	}
	l := cs.postLock(s.Context)
	if err := l.lock(ctx); err != nil {
		return false, fmt.Errorf("post status %s on %s: %w", s.Context, s.Commit, err)
	}
	defer l.unlock()
	if prev, ok := cs.get(s.Context); ok && prev == s {
		g.log.Debug("status unchanged", "commit", s.Commit, "context", s.Context, "state", s.State)
		return false, nil
	}

	rs := &github.RepoStatus{
		State:       github.String(string(s.State)),
		Context:     github.String(s.Context),
		Description: github.String(s.Description),
	}
	if s.TargetURL != "" {
		rs.TargetURL = github.String(s.TargetURL)
	}
	err := g.call(ctx, "CreateStatus", func(ctx context.Context) (*github.Response, error) {
		_, resp, err := g.client.Repositories.CreateStatus(ctx, g.owner, g.repo, s.Commit, rs)
		return resp, err
	})
	if err != nil {
		return false, fmt.Errorf("post status %s on %s: %w", s.Context, s.Commit, err)
	}
	cs.set(s)
	g.log.Info("status posted", "commit", s.Commit, "context", s.Context, "state", s.State, "description", s.Description)
	return true, nil
}

// commit returns the record of commit id, creating it (and forgetting the
// oldest commit when there are too many) if needed.
func (g *GitHub) commit(id string) *commitStatuses {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cs, ok := g.commits[id]; ok {
		return cs
	}
	if len(g.order) >= maxCachedCommits {
		delete(g.commits, g.order[0])
		g.order = g.order[1:]
	}
	cs := &commitStatuses{read: newCtxMutex(), latest: map[string]Status{}, posts: map[string]ctxMutex{}}
	g.commits[id] = cs
	g.order = append(g.order, id)
	return cs
}

// load reads the statuses of commit into cs, unless that was done.
func (g *GitHub) load(ctx context.Context, cs *commitStatuses, commit string) error {
	if err := cs.read.lock(ctx); err != nil {
		return err
	}
	defer cs.read.unlock()
	if cs.loaded {
		return nil
	}
	latest, err := g.latest(ctx, commit)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.latest, cs.loaded = latest, true
	return nil
}

// latest reads the latest status of every context on commit.
func (g *GitHub) latest(ctx context.Context, commit string) (map[string]Status, error) {
	latest := map[string]Status{}
	for page := 1; ; {
		// The combined status holds the latest status per context, which is
		// exactly what Post compares with. GitHub pages it with per_page
		// (at most 100), Gitea with limit (at most 50); each ignores the
		// other's parameter, so send both.
		path := fmt.Sprintf("repos/%s/%s/commits/%s/status?per_page=100&limit=100&page=%d",
			url.PathEscape(g.owner), url.PathEscape(g.repo), url.PathEscape(commit), page)
		var combined combinedStatus
		var next int
		err := g.call(ctx, "GetCombinedStatus", func(ctx context.Context) (*github.Response, error) {
			req, err := g.client.NewRequest(http.MethodGet, path, nil)
			if err != nil {
				return nil, err
			}
			combined = combinedStatus{}
			resp, err := g.client.Do(ctx, req, &combined)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("read statuses: %w", err)
		}
		for _, rs := range combined.Statuses {
			state := rs.State
			if state == "" {
				state = rs.Status
			}
			latest[rs.Context] = Status{
				Commit:      commit,
				Context:     rs.Context,
				State:       State(state),
				Description: rs.Description,
				TargetURL:   rs.TargetURL,
			}
		}
		if next == 0 || len(combined.Statuses) == 0 {
			return latest, nil
		}
		page = next
	}
}

// combinedStatus is the part of a combined status that latest reads. It
// is not go-github's CombinedStatus because Gitea names a status's state
// "status" where GitHub says "state" (only in what it returns: it accepts
// "state" when a status is created).
type combinedStatus struct {
	Statuses []struct {
		State       string `json:"state"`
		Status      string `json:"status"`
		Context     string `json:"context"`
		Description string `json:"description"`
		TargetURL   string `json:"target_url"`
	} `json:"statuses"`
}

// OpenPullRequests lists the repository's open pull requests, all pages.
// The agent intersects them with the refs/pull/*/head refs it fetched, so
// that it plans only heads it can read. Errors are the server's answer, with
// the token removed, or ctx's error.
func (g *GitHub) OpenPullRequests(ctx context.Context) ([]PullRequest, error) {
	var prs []PullRequest
	opts := &github.PullRequestListOptions{State: "open", ListOptions: github.ListOptions{PerPage: 100}}
	for {
		var page []*github.PullRequest
		var next int
		err := g.call(ctx, "ListPullRequests", func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			page, resp, err = g.client.PullRequests.List(ctx, g.owner, g.repo, opts)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("list open pull requests: %w", err)
		}
		for _, pr := range page {
			prs = append(prs, PullRequest{
				Number:  pr.GetNumber(),
				HeadSHA: pr.GetHead().GetSHA(),
				HeadRef: pr.GetHead().GetRef(),
				BaseRef: pr.GetBase().GetRef(),
			})
		}
		if next == 0 || len(page) == 0 {
			return prs, nil
		}
		opts.Page = next
	}
}

// redact replaces the token in s.
func (g *GitHub) redact(s string) string {
	if t := g.token.Reveal(); t != "" {
		s = strings.ReplaceAll(s, t, secret.Redacted)
	}
	return s
}
