package gitsource_test

import (
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloudpipe/cloudpipe/gitsource"
)

// gitEnv isolates the git CLI from the machine's configuration.
func gitEnv(tb testing.TB) []string {
	tb.Helper()
	home := tb.TempDir()
	return append(os.Environ(),
		"HOME="+home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+filepath.Join(home, "gitconfig"),
		"GIT_AUTHOR_NAME=cloudpipe test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=cloudpipe test", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// git runs the git CLI in dir and returns its trimmed standard output.
func git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(tb)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// newWorkRepo creates a non-bare repository on branch main.
func newWorkRepo(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	git(tb, dir, "init", "-q", "-b", "main")
	return dir
}

// commit writes files (an empty content deletes the file) and commits them
// all, returning the new commit's hash.
func commit(tb testing.TB, dir string, files map[string]string, msg string) string {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	git(tb, dir, "add", "-A")
	git(tb, dir, "commit", "-q", "--allow-empty", "-m", msg)
	return git(tb, dir, "rev-parse", "HEAD")
}

func workflowJSON(input, output string) string {
	return `{"input_s3_name": "` + input + `", "output_s3_name": "` + output + `",
  "process": {"type": "single_run", "algorithms": [{"name": "echo"}]}}
`
}

// gitServer serves the bare repositories under root with git http-backend,
// the server git itself ships, on 127.0.0.1.
type gitServer struct {
	*httptest.Server
	root string
}

// newGitServer starts the server; wrap, when not nil, sits in front of
// http-backend (to require authentication, say).
func newGitServer(tb testing.TB, root string, wrap func(http.Handler) http.Handler) *gitServer {
	tb.Helper()
	backend := filepath.Join(git(tb, root, "--exec-path"), "git-http-backend")
	var h http.Handler = &cgi.Handler{
		Path: backend,
		Dir:  root,
		Env:  append(gitEnv(tb), "GIT_PROJECT_ROOT="+root, "GIT_HTTP_EXPORT_ALL=1"),
		// http-backend explains a 404 on stderr; the status is what tests check.
		Stderr: io.Discard,
	}
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	tb.Cleanup(srv.Close)
	return &gitServer{Server: srv, root: root}
}

// countingTransport counts the HTTP requests a Source sends.
type countingTransport struct {
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// remote is a bare repository served over HTTP plus a working clone that
// authors its commits.
type remote struct {
	work, bare string
	srv        *gitServer
	url        string
}

// newRemote creates the bare repository "repo.git" with one commit on main,
// served over HTTP.
func newRemote(tb testing.TB) (*remote, string) {
	tb.Helper()
	root := tb.TempDir()
	r := &remote{work: newWorkRepo(tb), bare: filepath.Join(root, "repo.git")}
	git(tb, root, "init", "-q", "--bare", "-b", "main", r.bare)
	git(tb, r.work, "remote", "add", "origin", r.bare)
	first := r.push(tb, map[string]string{
		"workflows/first.json":  workflowJSON("in-first", "out-first"),
		"algorithms/echo.json":  `{"name": "echo"}` + "\n",
		"README.md":             "config repo\n",
		"workflows/nested/x.md": "nested\n",
	}, "first")
	r.srv = newGitServer(tb, root, nil)
	r.url = r.srv.URL + "/repo.git"
	return r, first
}

// push commits files in the working clone and pushes main; it returns the commit.
func (r *remote) push(tb testing.TB, files map[string]string, msg string) string {
	tb.Helper()
	h := commit(tb, r.work, files, msg)
	git(tb, r.work, "push", "-q", "--force", "origin", "HEAD:refs/heads/main")
	return h
}

// open opens a Source on r with a fresh cache and a request-counting client.
func (r *remote) open(tb testing.TB, modify func(*gitsource.Options)) (*gitsource.Source, *countingTransport) {
	tb.Helper()
	ct := &countingTransport{}
	o := gitsource.Options{URL: r.url, CacheDir: tb.TempDir(), HTTPClient: &http.Client{Transport: ct}}
	if modify != nil {
		modify(&o)
	}
	src, err := gitsource.Open(tb.Context(), o)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return src, ct
}
