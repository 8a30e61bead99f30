package sync_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/status"
)

// commentWrites is a RoundTripper that counts the requests writing issue
// comments (POST .../issues/N/comments, PATCH .../issues/comments/ID).
type commentWrites struct {
	mu sync.Mutex
	n  int
}

func (c *commentWrites) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/comments") {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (c *commentWrites) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// prComment is a pull-request comment as Gitea lists it.
type prComment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
	User struct {
		Login string `json:"login"`
	} `json:"user"`
}

// comments lists pull request pr's comments (Gitea answers all of them
// at once).
func (o *gitops) comments(pr int) []prComment {
	o.t.Helper()
	var list []prComment
	o.g.API(o.t, http.MethodGet, "repos/"+o.g.RepoName(o.repo)+"/issues/"+strconv.Itoa(pr)+"/comments", nil, &list)
	return list
}

// agentComment returns the one plan comment the agent wrote on pr,
// failing the test unless there is exactly one.
func (o *gitops) agentComment(pr int) prComment {
	o.t.Helper()
	var mine []prComment
	for _, c := range o.comments(pr) {
		if c.User.Login == o.g.User && strings.HasPrefix(c.Body, status.PlanMarker) {
			mine = append(mine, c)
		}
	}
	if len(mine) != 1 {
		o.t.Fatalf("%d plan comments by the agent on #%d, want 1", len(mine), pr)
	}
	return mine[0]
}

func TestGitOpsPlanComment(t *testing.T) {
	o := newGitOps(t, nil)
	o.pass()

	good, bad := o.name("good"), o.name("bad")
	goodFile, badFile := "workflows/"+good+".json", "workflows/"+bad+".json"
	head := o.g.CommitFiles(t, o.repo, testenv.ChangeFiles{NewBranch: "two", Message: "two workflows", Write: map[string]string{
		goodFile: singleRun(o.name("in"), o.name("out"), "x"),
		badFile:  singleRun("Bad_Bucket", o.name("bout"), "x"),
	}})
	pr := o.g.CreatePullRequest(t, o.repo, "two", "main", "two workflows")

	// One comment with both workflows: the create with its resources, the
	// invalid file with its problem where it is.
	o.pass()
	c := o.agentComment(pr)
	for _, want := range []string{
		"plan for commit " + head[:7],
		"#### + `" + good + "`: create",
		"sqs queue `cp-" + good + "-0`",
		"#### ! `" + bad + "`: invalid",
		badFile + ":2:20: input_s3_name: bucket name",
	} {
		if !strings.Contains(c.Body, want) {
			t.Errorf("the plan comment lacks %q:\n%s", want, c.Body)
		}
	}
	if s := o.statusOf(head, status.PlanContext); s == nil || s.State != "failure" {
		t.Errorf("cloudpipe/plan on the head: %+v", s)
	}

	// Another user answers, quoting the marker.
	other := "u" + strings.ReplaceAll(o.name("other"), "-", "")
	if len(other) > 39 {
		other = other[:39]
	}
	o.g.API(t, http.MethodPost, "admin/users", map[string]any{"username": other, "email": other + "@example.com",
		"password": "Passw0rd-" + other, "must_change_password": false}, nil)
	theirs := status.PlanMarker + "\nwhy is " + bad + " broken?"
	o.g.API(t, http.MethodPost, "repos/"+o.g.RepoName(o.repo)+"/issues/"+strconv.Itoa(pr)+"/comments?sudo="+other,
		map[string]string{"body": theirs}, nil)

	// A second push fixes the broken file: the same comment is edited.
	head2 := o.g.CommitFiles(t, o.repo, testenv.ChangeFiles{Branch: "two", Message: "fix", Write: map[string]string{
		badFile: singleRun(o.name("bin"), o.name("bout"), "x"),
	}})
	o.pass()
	c2 := o.agentComment(pr)
	if c2.ID != c.ID {
		t.Errorf("the second push made comment %d, not an edit of %d", c2.ID, c.ID)
	}
	if !strings.Contains(c2.Body, "plan for commit "+head2[:7]) || !strings.Contains(c2.Body, "#### + `"+bad+"`: create") ||
		strings.Contains(c2.Body, "`: invalid") {
		t.Errorf("the edited comment does not show the new head's plan:\n%s", c2.Body)
	}
	for _, cm := range o.comments(pr) {
		if cm.User.Login == other && cm.Body != theirs {
			t.Errorf("the other user's comment changed: %q", cm.Body)
		}
	}

	// A restarted agent plans the head again: the plan has not changed,
	// so no comment is written.
	writes := &commentWrites{}
	gh, err := status.New(status.Options{APIURL: o.g.APIURL, Repo: o.g.RepoName(o.repo), Token: secret.New(o.g.Token),
		HTTPClient: &http.Client{Transport: writes}})
	if err != nil {
		t.Fatal(err)
	}
	o.loop = o.newLoop(gh)
	o.pass()
	if n := writes.count(); n != 0 {
		t.Errorf("an unchanged plan wrote %d comments", n)
	}
	if c3 := o.agentComment(pr); c3.Body != c2.Body {
		t.Errorf("the comment changed without a new head")
	}

	// Closing the pull request leaves the comment.
	o.g.API(t, http.MethodPatch, "repos/"+o.g.RepoName(o.repo)+"/pulls/"+strconv.Itoa(pr), map[string]string{"state": "closed"}, nil)
	o.g.CommitFiles(t, o.repo, testenv.ChangeFiles{Message: "readme", Write: map[string]string{"README.md": "moved\n"}})
	o.pass()
	if c4 := o.agentComment(pr); c4.ID != c.ID || c4.Body != c2.Body {
		t.Errorf("closing the pull request changed its plan comment")
	}
}
