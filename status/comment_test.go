package status_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/status"
)

// requests is a RoundTripper that records "METHOD /path" of every request
// before passing it on.
type requests struct {
	mu   sync.Mutex
	seen []string
}

func (r *requests) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// writes returns the requests that were not reads.
func (r *requests) writes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.seen {
		if !strings.HasPrefix(s, "GET ") {
			out = append(out, s)
		}
	}
	return out
}

func (r *requests) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// issueComment is a comment as Gitea lists it.
type issueComment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
	User struct {
		Login string `json:"login"`
	} `json:"user"`
}

// prComments reads every comment of pull request pr, straight from Gitea,
// whose issue-comment listing is not paged: it answers all of them.
func (f *fixture) prComments(t *testing.T, pr int) []issueComment {
	t.Helper()
	var all []issueComment
	f.srv.API(t, http.MethodGet, fmt.Sprintf("repos/%s/%s/issues/%d/comments", f.srv.User, f.repo, pr), nil, &all)
	return all
}

// agentComments returns the comments of pr that the agent's user wrote.
func (f *fixture) agentComments(t *testing.T, pr int) []issueComment {
	t.Helper()
	var out []issueComment
	for _, c := range f.prComments(t, pr) {
		if c.User.Login == f.srv.User {
			out = append(out, c)
		}
	}
	return out
}

// otherUser creates a second Gitea user (the admin acts as it with ?sudo=)
// and returns its login.
func otherUser(t *testing.T, srv *testenv.GiteaServer) string {
	t.Helper()
	login := "u" + strings.ReplaceAll(testenv.UniqueName(t), "-", "")
	if len(login) > 39 {
		login = login[:39]
	}
	srv.API(t, http.MethodPost, "admin/users", map[string]any{
		"username": login, "email": login + "@example.com", "password": "Passw0rd-" + login,
		"must_change_password": false,
	}, nil)
	return login
}

// pullRequest opens a pull request on a new branch of the fixture's
// repository and returns its number.
func (f *fixture) pullRequest(t *testing.T, branch string) int {
	t.Helper()
	f.srv.CommitFiles(t, f.repo, testenv.ChangeFiles{NewBranch: branch, Write: map[string]string{"workflows/" + branch + ".json": "{}\n"}})
	return f.srv.CreatePullRequest(t, f.repo, branch, "main", "change "+branch)
}

func TestPlanCommentOnGitea(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pr := f.pullRequest(t, "add-foo")
	rec := &requests{}
	g := f.client(t, "", rec)

	// The first plan creates the comment, marked.
	posted, err := g.PostPlanComment(t.Context(), pr, "plan one")
	if err != nil || !posted {
		t.Fatalf("first PostPlanComment = %v, %v", posted, err)
	}
	mine := f.agentComments(t, pr)
	if len(mine) != 1 || mine[0].Body != status.PlanMarker+"\nplan one" {
		t.Fatalf("agent comments after the first plan: %+v", mine)
	}
	first := mine[0].ID

	// Another user quotes the marker: the comment is theirs, not the
	// agent's, and stays as they wrote it.
	other := otherUser(t, f.srv)
	quoted := status.PlanMarker + "\nI quote the bot"
	f.srv.API(t, http.MethodPost, fmt.Sprintf("repos/%s/%s/issues/%d/comments?sudo=%s", f.srv.User, f.repo, pr, other),
		map[string]string{"body": quoted}, nil)

	// An agent that restarted (no memory) edits its own comment.
	rec2 := &requests{}
	g2 := f.client(t, "", rec2)
	posted, err = g2.PostPlanComment(t.Context(), pr, "plan two")
	if err != nil || !posted {
		t.Fatalf("second PostPlanComment = %v, %v", posted, err)
	}
	if w := rec2.writes(); len(w) != 1 || !strings.HasPrefix(w[0], "PATCH ") || !strings.HasSuffix(w[0], "/issues/comments/"+strconv.FormatInt(first, 10)) {
		t.Errorf("second plan wrote %v, want one PATCH of comment %d", w, first)
	}
	all := f.prComments(t, pr)
	if len(all) != 2 {
		t.Fatalf("comments after the second plan: %+v", all)
	}
	for _, c := range all {
		switch c.User.Login {
		case f.srv.User:
			if c.ID != first || c.Body != status.PlanMarker+"\nplan two" {
				t.Errorf("agent comment after the second plan: %+v", c)
			}
		case other:
			if c.Body != quoted {
				t.Errorf("the other user's comment changed: %q", c.Body)
			}
		default:
			t.Errorf("comment by %s", c.User.Login)
		}
	}

	// The same plan again: no request at all from the agent that wrote it,
	// and reads only from one that restarted.
	before := rec2.count()
	if posted, err := g2.PostPlanComment(t.Context(), pr, "plan two"); err != nil || posted {
		t.Errorf("unchanged PostPlanComment = %v, %v", posted, err)
	}
	if n := rec2.count() - before; n != 0 {
		t.Errorf("an unchanged plan made %d requests", n)
	}
	rec3 := &requests{}
	if posted, err := f.client(t, "", rec3).PostPlanComment(t.Context(), pr, "plan two"); err != nil || posted {
		t.Errorf("unchanged PostPlanComment after a restart = %v, %v", posted, err)
	}
	if w := rec3.writes(); len(w) != 0 || rec3.count() == 0 {
		t.Errorf("an unchanged plan after a restart wrote %v (%d requests)", w, rec3.count())
	}

	// On another pull request the other user quotes the marker before the
	// agent ever comments: the agent adds its own comment.
	pr2 := f.pullRequest(t, "add-bar")
	f.srv.API(t, http.MethodPost, fmt.Sprintf("repos/%s/%s/issues/%d/comments?sudo=%s", f.srv.User, f.repo, pr2, other),
		map[string]string{"body": quoted}, nil)
	if posted, err := f.client(t, "", nil).PostPlanComment(t.Context(), pr2, "plan of bar"); err != nil || !posted {
		t.Fatalf("PostPlanComment after a quoted marker = %v, %v", posted, err)
	}
	if all := f.prComments(t, pr2); len(all) != 2 || all[0].Body != quoted || all[1].User.Login != f.srv.User {
		t.Errorf("comments on a pull request where a user quoted the marker first: %+v", all)
	}

	// Closing the pull request leaves the comment.
	f.srv.API(t, http.MethodPatch, fmt.Sprintf("repos/%s/%s/pulls/%d", f.srv.User, f.repo, pr), map[string]string{"state": "closed"}, nil)
	if mine := f.agentComments(t, pr); len(mine) != 1 || mine[0].ID != first {
		t.Errorf("agent comments after closing: %+v", mine)
	}
	f.checkNoToken(t)
}

// A plan too long for one comment is cut below GitHub's limit, with a note
// saying what was left out, and Gitea stores it whole.
func TestPlanCommentCutOnGitea(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pr := f.pullRequest(t, "big")
	var b strings.Builder
	b.WriteString("```\n")
	for i := 0; b.Len() < 3*status.MaxCommentBody; i++ {
		fmt.Fprintf(&b, "workflows/w%05d.json:1:1: input_s3_name: a long problem line that fills the comment\n", i)
	}
	b.WriteString("```\n")
	if _, err := f.client(t, "", nil).PostPlanComment(t.Context(), pr, b.String()); err != nil {
		t.Fatal(err)
	}
	mine := f.agentComments(t, pr)
	if len(mine) != 1 {
		t.Fatalf("agent comments: %d", len(mine))
	}
	body := mine[0].Body
	if len(body) > status.MaxCommentBody {
		t.Errorf("comment is %d bytes, over %d", len(body), status.MaxCommentBody)
	}
	if len(body) < status.MaxCommentBody-1000 {
		t.Errorf("comment is %d bytes: cut far below the limit", len(body))
	}
	if !strings.Contains(body, "more lines (") || !strings.Contains(body, "left out") {
		t.Errorf("the cut comment does not say what was left out: …%s", body[len(body)-300:])
	}
	if strings.Count(body, "```")%2 != 0 {
		t.Error("the cut left a code block open")
	}
}

func TestCommentBody(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		want      []string // substrings of the result
		notWant   []string
		maxLength int
	}{
		{name: "short", in: "hello\n", want: []string{status.PlanMarker + "\nhello\n"}, maxLength: 100},
		{name: "secrets", in: "a ghp_0123456789abcdefghijABCDEFGHIJ token\nurl https://user:pw@host/x?sig=1\nkey=AKIAIOSFODNN7EXAMPLE\n",
			want:    []string{"a [redacted] token", "url https://host/x\n"},
			notWant: []string{"ghp_0123456789abcdefghij", "pw@", "sig=1", "AKIAIOSFODNN7EXAMPLE"}, maxLength: 200},
		{name: "cut in a fence", in: "```\n" + strings.Repeat("0123456789 line\n", 10000),
			want: []string{"more lines (", "bytes) left out", "\n```\n\n**Cut"}, maxLength: status.MaxCommentBody},
		{name: "cut with a long fence", in: "````\n" + strings.Repeat("x ``` y\n", 20000),
			want: []string{"\n````\n\n**Cut"}, maxLength: status.MaxCommentBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := status.CommentBody(tc.in)
			if !strings.HasPrefix(got, status.PlanMarker+"\n") {
				t.Errorf("no marker first: %.80q", got)
			}
			if len(got) > tc.maxLength {
				t.Errorf("%d bytes, want at most %d", len(got), tc.maxLength)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in …%q", w, got[max(0, len(got)-400):])
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("%q is in the comment", w)
				}
			}
		})
	}
}

func TestConsoleAndDiscardComments(t *testing.T) {
	var out strings.Builder
	c := &status.Console{W: &out}
	for i, body := range []string{"plan A", "plan A", "plan B"} {
		posted, err := c.PostPlanComment(t.Context(), 7, body)
		if err != nil || posted != (i != 1) {
			t.Errorf("Console.PostPlanComment #%d = %v, %v", i, posted, err)
		}
	}
	if got := strings.Count(out.String(), "comment on pull request #7:\n"+status.PlanMarker); got != 2 {
		t.Errorf("console printed %d comments:\n%s", got, out.String())
	}
	var d status.Discard
	if posted, err := d.PostPlanComment(t.Context(), 7, "plan"); posted || err != nil {
		t.Errorf("Discard.PostPlanComment = %v, %v", posted, err)
	}
}
