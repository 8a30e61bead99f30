package testenv_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

func TestMain(m *testing.M) {
	defer testenv.StopServers()
	m.Run()
}

func TestGitea(t *testing.T) {
	srv := testenv.Gitea(t)
	if srv2 := testenv.Gitea(t); srv2 != srv {
		t.Error("a second call started a second server")
	}
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") || srv.APIURL != srv.URL+"api/v1/" || srv.User != "bot" || srv.Token == "" {
		t.Fatalf("URL %q, APIURL %q, User %q, token set %v", srv.URL, srv.APIURL, srv.User, srv.Token != "")
	}
	var version struct{ Version string }
	srv.API(t, http.MethodGet, "version", nil, &version)
	if version.Version != testenv.GiteaVersion {
		t.Errorf("version %q, want %q", version.Version, testenv.GiteaVersion)
	}

	repo := testenv.UniqueName(t)
	cloneURL := srv.CreateRepo(t, repo)
	if cloneURL != srv.CloneURL(repo) {
		t.Errorf("clone URL %q, want %q", cloneURL, srv.CloneURL(repo))
	}
	initial := srv.BranchCommit(t, repo, "main")

	// Push a commit over HTTP with the git CLI.
	dir := t.TempDir()
	srv.Git(t, dir, "clone", "--quiet", srv.PushURL(repo), ".")
	if head := strings.TrimSpace(srv.Git(t, dir, "rev-parse", "HEAD")); head != initial {
		t.Errorf("cloned HEAD %s, server's main %s", head, initial)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Git(t, dir, "add", "hello.txt")
	srv.Git(t, dir, "commit", "--quiet", "-m", "add hello")
	srv.Git(t, dir, "push", "--quiet", "origin", "HEAD:main")
	pushed := strings.TrimSpace(srv.Git(t, dir, "rev-parse", "HEAD"))
	if got := srv.BranchCommit(t, repo, "main"); got != pushed {
		t.Errorf("server's main %s after push, want %s", got, pushed)
	}

	// A branch made through the API, a pull request and its merge.
	feature := srv.CommitFiles(t, repo, testenv.ChangeFiles{
		Branch: "main", NewBranch: "feature", Message: "add a workflow",
		Write: map[string]string{"workflows/a.json": "{}\n", "hello.txt": "changed\n"},
	})
	if got := srv.BranchCommit(t, repo, "feature"); got != feature || feature == "" {
		t.Errorf("feature at %q, CommitFiles said %q", got, feature)
	}
	n := srv.CreatePullRequest(t, repo, "feature", "main", "Add a workflow")
	if n <= 0 {
		t.Fatalf("pull request number %d", n)
	}
	// Anonymous HTTP, as gitsource reads it: the pull request's head ref is
	// advertised, as on GitHub.
	refs := srv.Git(t, t.TempDir(), "ls-remote", cloneURL)
	if want := feature + "\trefs/pull/"; !strings.Contains(refs, want) {
		t.Errorf("ls-remote does not advertise the pull request head %q:\n%s", want, refs)
	}
	merged := srv.MergePullRequest(t, repo, n)
	if merged == "" || merged == pushed || merged == feature {
		t.Errorf("main at %q after the merge (pushed %s, feature %s)", merged, pushed, feature)
	}
	srv.Git(t, dir, "pull", "--quiet", "--ff-only", "origin", "main")
	if b, err := os.ReadFile(filepath.Join(dir, "workflows", "a.json")); err != nil || string(b) != "{}\n" {
		t.Errorf("merged workflows/a.json = %q, %v", b, err)
	}

	// Updating and deleting go through the same call.
	srv.CommitFiles(t, repo, testenv.ChangeFiles{
		Write:  map[string]string{"workflows/a.json": "{\"x\":1}\n"},
		Delete: []string{"hello.txt"},
	})
	srv.Git(t, dir, "pull", "--quiet", "--ff-only", "origin", "main")
	if _, err := os.Stat(filepath.Join(dir, "hello.txt")); !os.IsNotExist(err) {
		t.Errorf("hello.txt still there: %v", err)
	}
}

func TestGiteaPushURLHoldsToken(t *testing.T) {
	srv := testenv.Gitea(t)
	u := srv.PushURL("r")
	// Compare without printing: test output is public.
	if !strings.Contains(u, ":"+srv.Token+"@") || !strings.HasSuffix(u, "/bot/r.git") {
		t.Error("PushURL does not hold bot's token and the repository path")
	}
	if strings.Contains(srv.CloneURL("r"), srv.Token) {
		t.Error("CloneURL holds the token")
	}
}
