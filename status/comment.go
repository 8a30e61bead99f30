package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-github/v60/github"
)

// PlanMarker opens every plan comment the agent writes. The agent finds its
// comment on a pull request by this marker and by its own login as author:
// a user who quotes the marker in a comment of theirs does not make that
// comment the agent's.
const PlanMarker = "<!-- cloudpipe:plan -->"

// MaxCommentBody is the longest comment body GitHub accepts, 65,536
// characters, GitHub's documented API limit: beyond it the API answers 422
// "body is too long (maximum is 65536 characters)". CommentBody cuts to it counting bytes, which are
// never fewer than characters however GitHub counts them (code points or
// UTF-16 units), so a cut body is never refused.
const MaxCommentBody = 65536

// CommentBody returns body, which starts without the marker, as the body of
// a plan comment: PlanMarker, a newline and body with secrets removed
// (RedactText), cut at a line to fit MaxCommentBody with a last line saying
// how many lines and bytes were left out. A cut inside a fenced code block
// closes the block first, so the note is not swallowed by it.
func CommentBody(body string) string {
	body = PlanMarker + "\n" + RedactText(body)
	if len(body) <= MaxCommentBody {
		return body
	}
	lines := strings.SplitAfter(body, "\n")
	// The note's size depends on the counts it names; reserve enough for
	// any count a comment can have.
	const reserve = 200
	size, kept := 0, 0
	for kept < len(lines) && size+len(lines[kept]) <= MaxCommentBody-reserve {
		size += len(lines[kept])
		kept++
	}
	var b strings.Builder
	fence := ""
	for _, l := range lines[:kept] {
		b.WriteString(l)
		if f, ok := fenceOf(l); ok {
			switch {
			case fence == "":
				fence = f
			case strings.HasPrefix(f, fence):
				fence = ""
			}
		}
	}
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	if fence != "" {
		b.WriteString(fence + "\n")
	}
	omitted := len(body) - size
	fmt.Fprintf(&b, "\n**Cut to fit GitHub's %d-character comment limit: %d more lines (%d bytes) left out.** Run `agent plan` for the whole plan.\n",
		MaxCommentBody, len(lines)-kept, omitted)
	return b.String()
}

// fenceOf reports whether line opens or closes a fenced code block, and
// its fence (the run of backticks).
func fenceOf(line string) (string, bool) {
	t := strings.TrimSpace(line)
	n := 0
	for n < len(t) && t[n] == '`' {
		n++
	}
	if n < 3 {
		return "", false
	}
	return t[:n], true
}

// RedactText is ErrorDescription for text of many lines, such as a plan
// comment: every line keeps its place and its length is not cut, but URL
// credentials, query strings and fragments are removed and anything that
// looks like a credential is replaced by "[redacted]".
func RedactText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = redactLine(l)
	}
	return strings.Join(lines, "\n")
}

// CommentPoster writes the plan of a pull request as one comment on it; a
// GitHub, a Console and a Discard are CommentPosters.
type CommentPoster interface {
	// PostPlanComment makes body (without marker; see CommentBody) the
	// agent's plan comment on pull request pr, and reports whether it wrote.
	PostPlanComment(ctx context.Context, pr int, body string) (bool, error)
}

// comments is what a GitHub knows of its plan comments.
type comments struct {
	mu    sync.Mutex
	login string           // the authenticated user, once known
	posts map[int]ctxMutex // by pull request; held through find and write
	last  map[int]planComment
}

// planComment is the agent's comment on one pull request.
type planComment struct {
	id   int64
	body string // as posted, marker included
}

func (c *comments) lock(pr int) ctxMutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.posts == nil {
		c.posts, c.last = map[int]ctxMutex{}, map[int]planComment{}
	}
	l, ok := c.posts[pr]
	if !ok {
		l = newCtxMutex()
		c.posts[pr] = l
	}
	return l
}

func (c *comments) get(pr int) (planComment, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc, ok := c.last[pr]
	return pc, ok
}

func (c *comments) set(pr int, pc planComment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last[pr] = pc
}

// PostPlanComment makes CommentBody(body) the agent's plan comment on pull
// request pr: it edits the agent's comment there if there is one, and
// creates it otherwise. A body equal to the one the comment already holds
// is not written: the first call for a pull request reads its comments
// (and, once, who the agent is), later calls compare with what was
// written, without a request. The agent's comment is the first one that
// starts with PlanMarker and whose author is the authenticated user (for
// a GitHub App, its bot user); other users' comments are never touched.
// Errors are retried and scrubbed like Post's.
func (g *GitHub) PostPlanComment(ctx context.Context, pr int, body string) (bool, error) {
	body = g.redact(CommentBody(body))
	l := g.comments.lock(pr)
	if err := l.lock(ctx); err != nil {
		return false, fmt.Errorf("plan comment on #%d: %w", pr, err)
	}
	defer l.unlock()
	pc, known := g.comments.get(pr)
	if !known {
		var err error
		if pc, err = g.findPlanComment(ctx, pr); err != nil {
			return false, fmt.Errorf("plan comment on #%d: %w", pr, err)
		}
	}
	if pc.id != 0 && pc.body == body {
		g.comments.set(pr, pc)
		g.log.Debug("plan comment unchanged", "pull_request", pr, "comment", pc.id)
		return false, nil
	}
	ic := &github.IssueComment{Body: github.String(body)}
	if pc.id != 0 {
		err := g.call(ctx, "EditComment", func(ctx context.Context) (*github.Response, error) {
			_, resp, err := g.client.Issues.EditComment(ctx, g.owner, g.repo, pc.id, ic)
			return resp, err
		})
		if err != nil {
			return false, fmt.Errorf("edit plan comment on #%d: %w", pr, err)
		}
		g.comments.set(pr, planComment{id: pc.id, body: body})
		g.log.Info("plan comment edited", "pull_request", pr, "comment", pc.id, "bytes", len(body))
		return true, nil
	}
	var created *github.IssueComment
	err := g.call(ctx, "CreateComment", func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		created, resp, err = g.client.Issues.CreateComment(ctx, g.owner, g.repo, pr, ic)
		return resp, err
	})
	if err != nil {
		return false, fmt.Errorf("create plan comment on #%d: %w", pr, err)
	}
	g.comments.set(pr, planComment{id: created.GetID(), body: body})
	g.log.Info("plan comment created", "pull_request", pr, "comment", created.GetID(), "bytes", len(body))
	return true, nil
}

// findPlanComment reads the comments of pull request pr, all pages, and
// returns the agent's plan comment, or a zero planComment if it has none.
func (g *GitHub) findPlanComment(ctx context.Context, pr int) (planComment, error) {
	me, err := g.login(ctx)
	if err != nil {
		return planComment{}, err
	}
	// GitHub pages with per_page (at most 100), Gitea with limit (at
	// most 50); go-github sends per_page, so Gitea pages by its default
	// and the Link header still leads through every page.
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	for {
		var page []*github.IssueComment
		var next int
		err := g.call(ctx, "ListComments", func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			page, resp, err = g.client.Issues.ListComments(ctx, g.owner, g.repo, pr, opts)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return planComment{}, fmt.Errorf("list comments: %w", err)
		}
		for _, c := range page {
			if strings.EqualFold(c.GetUser().GetLogin(), me) && strings.HasPrefix(c.GetBody(), PlanMarker) {
				return planComment{id: c.GetID(), body: c.GetBody()}, nil
			}
		}
		// Gitea does not page this listing (it answers every comment,
		// with no Link header); a server that named the page it just sent
		// as the next must not loop either.
		if next <= opts.Page || len(page) == 0 {
			return planComment{}, nil
		}
		opts.Page = next
	}
}

// login returns the login of the user the agent authenticates as, asking
// the server once. A GitHub App's installation token may not read /user
// (GitHub answers 403): the App's bot user is then "<slug>[bot]", the
// slug read from /app with the App's own token.
func (g *GitHub) login(ctx context.Context) (string, error) {
	g.comments.mu.Lock()
	me := g.comments.login
	g.comments.mu.Unlock()
	if me != "" {
		return me, nil
	}
	var u *github.User
	err := g.call(ctx, "GetUser", func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		u, resp, err = g.client.Users.Get(ctx, "")
		return resp, err
	})
	var er *github.ErrorResponse
	switch {
	case err == nil:
		me = u.GetLogin()
	case g.appClient != nil && errors.As(err, &er) && er.Response != nil &&
		(er.Response.StatusCode == http.StatusForbidden || er.Response.StatusCode == http.StatusUnauthorized):
		var app *github.App
		err = g.call(ctx, "GetApp", func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			app, resp, err = g.appClient.Apps.Get(ctx, "")
			return resp, err
		})
		if err != nil {
			return "", fmt.Errorf("read the app: %w", err)
		}
		me = app.GetSlug() + "[bot]"
	default:
		return "", fmt.Errorf("read the authenticated user: %w", err)
	}
	if me == "" || me == "[bot]" {
		return "", errors.New("read the authenticated user: the server named none")
	}
	g.comments.mu.Lock()
	g.comments.login = me
	g.comments.mu.Unlock()
	return me, nil
}

// PostPlanComment on a Discard writes nothing; the first call logs that
// plan comments are skipped.
func (d *Discard) PostPlanComment(ctx context.Context, pr int, _ string) (bool, error) {
	d.commentOnce.Do(func() {
		if d.Logger != nil {
			d.Logger.WarnContext(ctx, "no github credentials, plan comments skipped",
				"component", "status", "pull_request", pr)
		}
	})
	return false, nil
}

// PostPlanComment on a Console prints the comment it would post, framed by
// a line naming the pull request, unless it printed that body for that
// pull request last.
func (c *Console) PostPlanComment(_ context.Context, pr int, body string) (bool, error) {
	body = CommentBody(body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.comments[pr] == body {
		return false, nil
	}
	if c.W != nil {
		if _, err := io.WriteString(c.W, "comment on pull request #"+strconv.Itoa(pr)+":\n"+body+"\n"); err != nil {
			return false, fmt.Errorf("print plan comment: %w", err)
		}
	}
	if c.comments == nil {
		c.comments = map[int]string{}
	}
	c.comments[pr] = body
	return true, nil
}
