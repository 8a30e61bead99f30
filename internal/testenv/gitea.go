package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// GiteaVersion is the Gitea release the tests run against; scripts/gitea
// builds the same one (keep the two in step). v1.27 cannot be built here.
const GiteaVersion = "1.26.0"

// GiteaUser is the admin user that owns every test repository.
const GiteaUser = "bot"

// GiteaServer is a running Gitea: a real Git server over HTTP whose API at
// /api/v1/ speaks the GitHub commit-status and pull-request endpoints that
// go-github uses. Its methods fail the calling test on error.
type GiteaServer struct {
	URL    string // web and Git root, "http://127.0.0.1:PORT/"
	APIURL string // URL + "api/v1/", the base URL for go-github
	User   string // GiteaUser, owner of every repository created here
	// Token is an access token of User with every scope. Never print it,
	// nor anything made from it (PushURL): test logs are public.
	Token string

	host string // "127.0.0.1:PORT"
	http *http.Client
}

// The server is process-wide: starting Gitea (migrate, create a user, mint a
// token, serve) takes several seconds, and its repositories are named per
// test anyway. servers holds what StopServers stops.
var (
	giteaOnce sync.Once
	giteaSrv  *GiteaServer
	giteaErr  error
	giteaSkip string

	serversMu sync.Mutex
	servers   []func()
)

// Gitea returns the test binary's Gitea server, starting it on first use.
// The binary comes from $CLOUDPIPE_GITEA_BIN, else from the cache that
// scripts/gitea fills ($CLOUDPIPE_CACHE/gitea/vVERSION/gitea, default cache
// ~/.cache/cloudpipe); options/ and templates/ must lie next to it. When it
// is in neither place, Gitea skips the test under -short and otherwise runs
// "scripts/gitea build" (minutes, once), failing the test if that fails:
// CI must not pass by skipping.
//
// The server runs until StopServers; a package that uses it stops it from
// TestMain:
//
//	func TestMain(m *testing.M) {
//		defer testenv.StopServers()
//		m.Run()
//	}
//
// Should the test binary die first, the kernel kills Gitea with it; only its
// temporary directory is left behind.
func Gitea(tb testing.TB) *GiteaServer {
	tb.Helper()
	giteaOnce.Do(func() { giteaSrv, giteaSkip, giteaErr = startGitea() })
	if giteaSkip != "" {
		tb.Skip(giteaSkip)
	}
	if giteaErr != nil {
		tb.Fatalf("start gitea: %v", giteaErr)
	}
	return giteaSrv
}

// StopServers stops every server a helper of this package started (Gitea)
// and removes their files. Call it once, after m.Run, from TestMain.
func StopServers() {
	serversMu.Lock()
	stops := servers
	servers = nil
	serversMu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

func onStop(f func()) {
	serversMu.Lock()
	defer serversMu.Unlock()
	servers = append(servers, f)
}

// giteaBinary finds the Gitea binary, building it if needed (see Gitea). A
// non-empty skip means the test should be skipped.
func giteaBinary() (bin, skip string, err error) {
	if bin := os.Getenv("CLOUDPIPE_GITEA_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", "", fmt.Errorf("CLOUDPIPE_GITEA_BIN: %w", err)
		}
		return bin, "", nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(cache, "gitea", "v"+GiteaVersion, "gitea")
	if _, err := os.Stat(bin); err == nil {
		return bin, "", nil
	}
	if testing.Short() {
		return "", "gitea is not built (" + bin + "); run scripts/gitea build, or drop -short to build it", nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "gitea"), "build")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("scripts/gitea build: %w\n%s", err, tail(stderr.String(), 4000))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], "", nil
}

// repoRoot walks up from the working directory (a test's is its package
// directory) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: cannot find scripts/gitea")
		}
		dir = parent
	}
}

// startGitea configures, initialises and starts a Gitea in a new temporary
// directory, and registers its stop with StopServers.
func startGitea() (srv *GiteaServer, skip string, err error) {
	bin, skip, err := giteaBinary()
	if skip != "" || err != nil {
		return nil, skip, err
	}
	assets := filepath.Dir(bin)
	if _, err := os.Stat(filepath.Join(assets, "options")); err != nil {
		return nil, "", fmt.Errorf("gitea assets: %w (options/ and templates/ belong next to the binary)", err)
	}
	removeStaleGiteaDirs()
	dir, err := os.MkdirTemp("", giteaDirPrefix)
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()

	// A port picked by listening on :0 may be taken by someone else before
	// Gitea binds it; try again with a new one.
	for try := 1; ; try++ {
		var port int
		if port, err = freePort(); err != nil {
			return nil, "", err
		}
		var stop func()
		srv, stop, err = runGitea(bin, assets, dir, port)
		if err == nil {
			onStop(func() {
				stop()
				os.RemoveAll(dir)
			})
			return srv, "", nil
		}
		if try == 3 || !errors.Is(err, errPortTaken) {
			return nil, "", err
		}
	}
}

var errPortTaken = errors.New("port taken")

const (
	giteaDirPrefix = "cloudpipe-gitea-"
	ownerFile      = "owner.pid" // the process ID of the test binary that runs the Gitea
)

// removeStaleGiteaDirs removes the work directories of Gitea servers whose
// test binary is gone (killed, or without StopServers): the kernel killed
// their Gitea, but nothing removed their files.
func removeStaleGiteaDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), giteaDirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// tokenPattern is the shape of a Gitea access token.
var tokenPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// runGitea writes app.ini for port, prepares the database, the bot user and
// its token, and serves until stop is called. The error wraps errPortTaken
// when port is in use.
func runGitea(bin, assets, dir string, port int) (srv *GiteaServer, stop func(), err error) {
	host := "127.0.0.1:" + strconv.Itoa(port)
	ini := filepath.Join(dir, "app.ini")
	if err := os.WriteFile(ini, []byte(giteaConfig(dir, assets, port)), 0o600); err != nil {
		return nil, nil, err
	}
	env := append(os.Environ(), "GITEA_WORK_DIR="+dir)
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--config", ini}, args...)...)
		cmd.Dir, cmd.Env = dir, env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			// The output of a failed token command could hold the token,
			// so quote only the command's first words and stderr.
			return "", fmt.Errorf("gitea %s: %w\n%s", args[0], err, tail(stderr.String(), 4000))
		}
		return string(out), nil
	}

	// The database exists only after migrate, the token only after the user.
	if !isDir(filepath.Join(dir, "data")) {
		if _, err := run("migrate"); err != nil {
			return nil, nil, err
		}
		if _, err := run("admin", "user", "create", "--username", GiteaUser, "--password", randomHex(16),
			"--email", GiteaUser+"@example.com", "--admin", "--must-change-password=false"); err != nil {
			return nil, nil, err
		}
	}
	token, err := run("admin", "user", "generate-access-token", "--username", GiteaUser,
		"--token-name", "cloudpipe-"+randomHex(4), "--scopes", "all", "--raw")
	if err != nil {
		return nil, nil, err
	}
	// Gitea logs to stdout too (a warning about running as root, say):
	// the token is the last line.
	lines := strings.Split(strings.TrimSpace(token), "\n")
	token = strings.TrimSpace(lines[len(lines)-1])
	if !tokenPattern.MatchString(token) {
		return nil, nil, errors.New("gitea generate-access-token printed no token")
	}

	logPath := filepath.Join(dir, "web.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "--config", ini, "web")
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Kill Gitea when the test binary dies, even by SIGKILL or a test
	// timeout, when no cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	exited := make(chan struct{}) // closed when Gitea has exited, after waitErr is set
	var waitErr error
	go func() {
		// Pdeathsig fires when the thread that started the child exits,
		// not the process. Keep this goroutine on its thread (never
		// unlocked, so the runtime retires the thread only once Gitea has
		// exited) so that it cannot go away under a running server.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waitErr = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	if err := <-started; err != nil {
		logFile.Close()
		return nil, nil, fmt.Errorf("start gitea web: %w", err)
	}
	stop = func() {
		// SIGTERM lets Gitea shut down cleanly; give it a few seconds.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	srv = &GiteaServer{
		URL:    "http://" + host + "/",
		APIURL: "http://" + host + "/api/v1/",
		User:   GiteaUser,
		Token:  token,
		host:   host,
		http:   &http.Client{Timeout: time.Minute},
	}
	if err := srv.waitReady(exited, &waitErr, logPath); err != nil {
		stop()
		if errors.Is(err, errPortTaken) {
			return nil, nil, fmt.Errorf("gitea web on %s: %w", host, err)
		}
		log, _ := os.ReadFile(logPath)
		return nil, nil, fmt.Errorf("gitea web on %s: %w\n%s", host, err, tail(string(log), 4000))
	}
	return srv, stop, nil
}

// waitReady polls Gitea until it answers as itself, it exits (exited
// closes, *waitErr says how), or a minute passes. Gitea does not exit when
// its port is taken, it logs and idles, while whatever holds the port may
// answer in its place: so the log is checked for the bind error, and the
// answer must accept our token.
func (s *GiteaServer) waitReady(exited <-chan struct{}, waitErr *error, logPath string) error {
	deadline := time.After(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if log, _ := os.ReadFile(logPath); bytes.Contains(log, []byte("address already in use")) {
			return errPortTaken
		}
		if code, _, err := s.get("version", false); err == nil && code == http.StatusOK {
			// Gitea serves the API only once the token is in its database,
			// so anything but our user here is another server.
			var user struct {
				Login string `json:"login"`
			}
			code, body, err := s.get("user", true)
			if err == nil && code == http.StatusOK && json.Unmarshal(body, &user) == nil && user.Login == s.User {
				return nil
			}
			return fmt.Errorf("%w: its server does not know our token (status %d, %v)", errPortTaken, code, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before serving: %v", *waitErr)
		case <-deadline:
			return errors.New("no answer from /api/v1/version within a minute")
		case <-tick.C:
		}
	}
}

// get sends GET path (relative to APIURL), with the token when auth, and
// returns the status code and the answer.
func (s *GiteaServer) get(path string, auth bool) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, s.APIURL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if auth {
		req.Header.Set("Authorization", "token "+s.Token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// giteaConfig is app.ini for a Gitea in dir that serves on 127.0.0.1:port.
func giteaConfig(dir, assets string, port int) string {
	root := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	// Gitea refuses to run as root without the first line, and root is who
	// runs CI containers.
	return `I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
APP_NAME = cloudpipe test
RUN_MODE = prod
WORK_PATH = ` + dir + `

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = ` + strconv.Itoa(port) + `
ROOT_URL = ` + root + `
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = ` + filepath.Join(dir, "data") + `
; built without the bindata tag, Gitea reads options/ and templates/ from
; here: the cache, so nothing is copied per run
STATIC_ROOT_PATH = ` + assets + `

[database]
DB_TYPE = sqlite3
PATH = ` + filepath.Join(dir, "data", "gitea.db") + `
; tests write from many goroutines: WAL lets readers and a writer overlap
SQLITE_JOURNAL_MODE = WAL

[indexer]
; the database is enough for a handful of issues; bleve costs a second
; per new pull request on a busy machine
ISSUE_INDEXER_TYPE = db

[security]
INSTALL_LOCK = true
SECRET_KEY = ` + randomHex(32) + `
INTERNAL_TOKEN = ` + randomJWTSecret() + `

[oauth2]
JWT_SECRET = ` + randomJWTSecret() + `

[repository]
ROOT = ` + filepath.Join(dir, "repos") + `

[service]
DISABLE_REGISTRATION = true

[webhook]
; let Gitea deliver webhooks to an agent listening on loopback
ALLOWED_HOST_LIST = loopback

[actions]
ENABLED = false

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[log]
MODE = console
LEVEL = Warn
`
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// randomJWTSecret returns a value in the form Gitea generates for
// INTERNAL_TOKEN and JWT_SECRET; set in advance, Gitea does not write them
// back into app.ini (from three commands in turn).
func randomJWTSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// tail returns at most the last n bytes of s, to quote a long log.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// CloneURL returns the anonymous HTTP clone URL of repository repo of User.
func (s *GiteaServer) CloneURL(repo string) string {
	return s.URL + s.User + "/" + repo + ".git"
}

// PushURL returns the HTTP URL of repository repo of User with User and
// Token in it, for git push. It holds the token: never print it.
func (s *GiteaServer) PushURL(repo string) string {
	u := url.URL{Scheme: "http", User: url.UserPassword(s.User, s.Token), Host: s.host, Path: "/" + s.User + "/" + repo + ".git"}
	return u.String()
}

// RepoName returns "bot/<repo>", the owner/name form status.Options takes.
func (s *GiteaServer) RepoName(repo string) string { return s.User + "/" + repo }

// CreateRepo creates public repository name, owned by User, with one
// commit on its default branch main, and returns its clone URL. Names must
// be unique in the test binary: derive them with UniqueName.
func (s *GiteaServer) CreateRepo(tb testing.TB, name string) (cloneURL string) {
	tb.Helper()
	var repo struct {
		CloneURL string `json:"clone_url"`
	}
	s.API(tb, http.MethodPost, "user/repos", map[string]any{
		"name":           name,
		"auto_init":      true,
		"default_branch": "main",
		"private":        false,
	}, &repo)
	return repo.CloneURL
}

// MakePrivate makes repository repo private: Git and the API then serve
// it only to a request authenticated as User (with Token).
func (s *GiteaServer) MakePrivate(tb testing.TB, repo string) {
	tb.Helper()
	s.API(tb, http.MethodPatch, "repos/"+s.User+"/"+repo, map[string]any{"private": true}, nil)
}

// BranchCommit returns the commit ID at the tip of branch of repo.
func (s *GiteaServer) BranchCommit(tb testing.TB, repo, branch string) string {
	tb.Helper()
	var b struct {
		Commit struct {
			ID string `json:"id"`
		} `json:"commit"`
	}
	s.API(tb, http.MethodGet, "repos/"+s.User+"/"+repo+"/branches/"+url.PathEscape(branch), nil, &b)
	return b.Commit.ID
}

// ChangeFiles is one commit made through the API with CommitFiles.
type ChangeFiles struct {
	Branch    string            // the branch to commit on; "" is the default branch
	NewBranch string            // if set, create this branch from Branch and commit there
	Message   string            // commit message; "" gives a generic one
	Write     map[string]string // path -> content, created or replaced
	Delete    []string          // paths to delete
}

// CommitFiles makes one commit in repo without a clone and returns its ID.
func (s *GiteaServer) CommitFiles(tb testing.TB, repo string, c ChangeFiles) string {
	tb.Helper()
	type file struct {
		Operation string `json:"operation"`
		Path      string `json:"path"`
		Content   string `json:"content,omitempty"`
		SHA       string `json:"sha,omitempty"`
	}
	var files []file
	for path, content := range c.Write {
		op, sha := "create", s.fileSHA(tb, repo, c.Branch, path)
		if sha != "" {
			op = "update"
		}
		files = append(files, file{Operation: op, Path: path, SHA: sha,
			Content: base64.StdEncoding.EncodeToString([]byte(content))})
	}
	for _, path := range c.Delete {
		files = append(files, file{Operation: "delete", Path: path, SHA: s.fileSHA(tb, repo, c.Branch, path)})
	}
	msg := c.Message
	if msg == "" {
		msg = "change files"
	}
	var out struct {
		Commit struct {
			SHA string `json:"sha"`
		} `json:"commit"`
	}
	s.API(tb, http.MethodPost, "repos/"+s.User+"/"+repo+"/contents", map[string]any{
		"branch":     c.Branch,
		"new_branch": c.NewBranch,
		"message":    msg,
		"files":      files,
	}, &out)
	return out.Commit.SHA
}

// fileSHA returns the blob ID of path on branch, or "" if there is none.
func (s *GiteaServer) fileSHA(tb testing.TB, repo, branch, path string) string {
	tb.Helper()
	q := ""
	if branch != "" {
		q = "?ref=" + url.QueryEscape(branch)
	}
	var f struct {
		SHA string `json:"sha"`
	}
	segments := strings.Split(path, "/")
	for i, seg := range segments {
		segments[i] = url.PathEscape(seg)
	}
	code, answer := s.do(tb, http.MethodGet, "repos/"+s.User+"/"+repo+"/contents/"+strings.Join(segments, "/")+q, nil, &f)
	switch code {
	case http.StatusOK:
	case http.StatusNotFound:
		return ""
	default:
		tb.Fatalf("gitea: GET contents of %s: status %d: %s", path, code, answer)
	}
	return f.SHA
}

// CreatePullRequest opens a pull request of branch head into base of repo
// and returns its number.
func (s *GiteaServer) CreatePullRequest(tb testing.TB, repo, head, base, title string) int {
	tb.Helper()
	var pr struct {
		Number int `json:"number"`
	}
	s.API(tb, http.MethodPost, "repos/"+s.User+"/"+repo+"/pulls", map[string]any{
		"head": head, "base": base, "title": title,
	}, &pr)
	return pr.Number
}

// MergePullRequest merges pull request n of repo with a merge commit and
// returns the commit ID its base branch then points at.
func (s *GiteaServer) MergePullRequest(tb testing.TB, repo string, n int) string {
	tb.Helper()
	path := "repos/" + s.User + "/" + repo + "/pulls/" + strconv.Itoa(n)
	// Gitea checks whether a new pull request can be merged in the
	// background and refuses to merge until it has; wait for the check.
	deadline := time.Now().Add(time.Minute)
	for {
		var pr struct {
			Mergeable bool `json:"mergeable"`
			Base      struct {
				Ref string `json:"ref"`
			} `json:"base"`
		}
		s.API(tb, http.MethodGet, path, nil, &pr)
		if pr.Mergeable {
			code, answer := s.do(tb, http.MethodPost, path+"/merge", map[string]any{"Do": "merge"}, nil)
			if code == http.StatusOK {
				return s.BranchCommit(tb, repo, pr.Base.Ref)
			}
			// 405 "try again later": the check is still running.
			if code != http.StatusMethodNotAllowed {
				tb.Fatalf("gitea: merge %s#%d: status %d: %s", repo, n, code, answer)
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("gitea: %s#%d not mergeable after a minute", repo, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// API calls the Gitea API as User: method on path (relative to APIURL),
// with body encoded as JSON when not nil, decoding a 2xx answer into out
// when not nil. Any other answer fails the test.
func (s *GiteaServer) API(tb testing.TB, method, path string, body, out any) {
	tb.Helper()
	if code, answer := s.do(tb, method, path, body, out); code/100 != 2 {
		tb.Fatalf("gitea: %s %s: status %d: %s", method, path, code, answer)
	}
}

// do is API that returns the status code, and the start of any answer
// other than 2xx, instead of judging them; only a 2xx answer is decoded into
// out.
func (s *GiteaServer) do(tb testing.TB, method, path string, body, out any) (code int, answer string) {
	tb.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatalf("gitea: %s %s: %v", method, path, err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(tb.Context()), method, s.APIURL+path, r)
	if err != nil {
		tb.Fatalf("gitea: %s %s: %v", method, path, err)
	}
	req.Header.Set("Authorization", "token "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		tb.Fatalf("gitea: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("gitea: %s %s: read answer: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		if len(data) > 1000 {
			data = data[:1000]
		}
		return resp.StatusCode, string(data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("gitea: %s %s: decode answer: %v", method, path, err)
		}
	}
	return resp.StatusCode, ""
}

// Git runs the git CLI in dir with a configuration of its own (no user or
// system config, an author, no prompts) and returns its standard output.
// It fails the test on error, quoting git's output with the token removed,
// since git may print the URL it was given.
func (s *GiteaServer) Git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.CommandContext(context.WithoutCancel(tb.Context()), "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=cloudpipe test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=cloudpipe test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		redact := func(b []byte) string { return strings.ReplaceAll(string(b), s.Token, "[redacted]") }
		tb.Fatalf("git %s: %v\n%s%s", args[0], err, redact(out), redact(stderr.Bytes()))
	}
	return string(out)
}

// CacheDir is where test tools are built or installed once and reused:
// $CLOUDPIPE_CACHE, default ~/.cache/cloudpipe (scripts/test uses the same).
func CacheDir() (string, error) {
	if cache := os.Getenv("CLOUDPIPE_CACHE"); cache != "" {
		return cache, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find cache: %w", err)
	}
	return filepath.Join(home, ".cache", "cloudpipe"), nil
}
