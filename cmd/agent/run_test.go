package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/webhook"
)

// logWatch collects an agent's JSON log lines and lets a test wait for one.
type logWatch struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (w *logWatch) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		_ = json.Unmarshal(sc.Bytes(), &m)
		w.mu.Lock()
		w.raw.Write(sc.Bytes())
		w.raw.WriteByte('\n')
		if m != nil {
			w.lines = append(w.lines, m)
		}
		w.mu.Unlock()
	}
}

// count returns how many lines have message msg.
func (w *logWatch) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

func (w *logWatch) text() string { w.mu.Lock(); defer w.mu.Unlock(); return w.raw.String() }

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func freeAddr(t *testing.T) string { t.Helper(); return freeAddrTB(t) }

// runEnv is a config repository on Gitea with the examples' algorithms, a
// bootstrapped state bucket in kumo, and what an agent needs to run on them.
type runEnv struct {
	g        *testenv.GiteaServer
	name     string // repository (and workflow) name
	cloneURL string
	state    string
}

func newRunEnv(t *testing.T) *runEnv {
	t.Helper()
	asAgentRole(t)
	kumo := testenv.Kumo(t)
	g := testenv.Gitea(t)
	name := testenv.UniqueName(t)
	cloneURL := g.CreateRepo(t, name)
	algs := map[string]string{}
	entries, err := os.ReadDir(filepath.Join("..", "..", "algorithms"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("..", "..", "algorithms", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		algs["algorithms/"+e.Name()] = string(data)
	}
	g.CommitFiles(t, name, testenv.ChangeFiles{Message: "algorithms", Write: algs})
	subnets, sgs := testenv.NewNetwork(t, kumo)
	state := "cloudpipe-state-" + name // as the agent's policy scopes it
	if code, out, errOut := runAgent(t, ".", "bootstrap", "--state-bucket", state,
		"--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")); code != exitOK {
		t.Fatalf("bootstrap: %d\n%s%s", code, out, errOut)
	}
	return &runEnv{g: g, name: name, cloneURL: cloneURL, state: state}
}

// agentProc is a running `agent run`.
type agentProc struct {
	cmd  *exec.Cmd
	logs *logWatch
	base string // http://addr
	done chan struct{}
}

// startAgent starts `agent run` with args and extra environment, and waits
// until it has served /healthz.
func startAgent(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	var full []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") {
			full = append(full, kv)
		}
	}
	full = append(full, env...)
	args = append([]string{"--cache-dir", t.TempDir(), "--log-format", "json", "--log-level", "debug"}, args...)
	return launchAgent(t, bin, full, nil, true, args...)
}

// launchAgent starts bin as `agent run` with exactly env, its stdout going
// to stdout, and waits until it serves /healthz. showLogs puts the agent's
// log in the failure message when it never does.
func launchAgent(t *testing.T, bin string, env []string, stdout io.Writer, showLogs bool, args ...string) *agentProc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append([]string{"run", "--listen", addr}, args...)...)
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, logs: &logWatch{}, base: "http://" + addr, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.logs.consume(stderr); close(p.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done; _ = cmd.Wait() })
	if !waitFor(60*time.Second, func() bool { return p.get("/healthz") == http.StatusOK }) {
		if showLogs {
			t.Fatalf("agent never served /healthz:\n%s", p.logs.text())
		}
		t.Fatalf("agent never served /healthz (%d bytes of logs)", len(p.logs.text()))
	}
	return p
}

// get returns the status code of GET path, or 0 if the agent is unreachable.
func (p *agentProc) get(path string) int {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stop sends SIGTERM and waits for a clean exit.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
	if p.logs.count("agent stopped") != 1 {
		t.Errorf("agent did not log a clean stop:\n%s", p.logs.text())
	}
}

// TestRunWebhookAndStatuses runs `agent run` against Gitea and kumo with the
// GitHub token in Secrets Manager: a badly signed push webhook is refused and
// starts nothing, a signed one starts a pass at once, and the merge commit
// gets its cloudpipe/<workflow> status. SIGTERM stops the agent cleanly.
func TestRunWebhookAndStatuses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea, kumo and the agent")
	}
	re := newRunEnv(t)
	g, name := re.g, re.name
	tokenSecret, err := secretsmanager.NewFromConfig(testenv.Kumo(t)).CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{
		// The agent's policy reads its own secrets only, under cloudpipe/.
		Name: aws.String("cloudpipe/" + name + "-github-token"), SecretString: aws.String(g.Token)})
	if err != nil {
		t.Fatal(err)
	}
	const hookSecret = "hook-secret-for-run-test"
	p := startAgent(t, []string{"CLOUDPIPE_GITHUB_TOKEN_SECRET=" + aws.ToString(tokenSecret.ARN), "CLOUDPIPE_WEBHOOK_SECRET=" + hookSecret},
		"--repo", re.cloneURL, "--github-api", g.APIURL, "--github-repo", g.RepoName(name),
		"--state-bucket", re.state, "--schedule", "@every 1h", "--agent-id", "run-test")
	logs, base := p.logs, p.base
	if !waitFor(60*time.Second, func() bool { return p.get("/readyz") == http.StatusOK }) {
		t.Fatalf("agent never became ready:\n%s", logs.text())
	}

	wf := name
	commit := g.CommitFiles(t, name, testenv.ChangeFiles{Message: "add " + wf, Write: map[string]string{
		"workflows/" + wf + ".json": fmt.Sprintf(`{"input_s3_name": "%s-in", "output_s3_name": "%s-out", "region": "us-east-1",
 "process": {"type": "single_run", "algorithms": [{"name": "sort-lines", "port": [], "variables": {}}]}}`, wf, wf)}})
	push := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"full_name":%q}}`, commit, g.RepoName(name)))
	send := func(sig, delivery string) int {
		req, _ := http.NewRequest("POST", base+"/hooks/github", bytes.NewReader(push))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	passes := logs.count("pass started")
	if code := send(webhook.Sign(secret.New("wrong-secret"), push), "bad-1"); code != http.StatusUnauthorized {
		t.Fatalf("badly signed webhook: %d, want 401", code)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := logs.count("pass started"); n != passes {
		t.Fatalf("a badly signed webhook started a pass")
	}

	if code := send(webhook.Sign(secret.New(hookSecret), push), "good-1"); code != http.StatusAccepted {
		t.Fatalf("signed webhook: %d, want 202", code)
	}
	if !waitFor(time.Second, func() bool { return logs.count("pass started") > passes }) {
		t.Fatalf("no pass started within 1s of a signed push")
	}
	var desc string
	if !waitFor(90*time.Second, func() bool {
		var combined struct {
			Statuses []struct {
				Context, Status, Description string
			} `json:"statuses"`
		}
		g.API(t, "GET", "repos/"+g.RepoName(name)+"/commits/"+commit+"/status", nil, &combined)
		for _, s := range combined.Statuses {
			if s.Context == "cloudpipe/"+wf && s.Status == "success" {
				desc = s.Description
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no success status on the pushed commit:\n%s", logs.text())
	}
	if !strings.Contains(desc, "s3://"+wf+"-in") || !strings.Contains(desc, "s3://"+wf+"-out") {
		t.Errorf("status description %q does not name both buckets", desc)
	}

	p.stop(t)
	out := logs.text()
	for _, s := range []string{g.Token, hookSecret} {
		if strings.Contains(out, s) {
			t.Errorf("a secret appears in the agent's logs")
		}
	}
}

// TestRunMetricsAndReadiness scrapes /metrics and parses it with Prometheus'
// own text parser, and checks that /readyz turns unready while the Git remote
// is down and ready again when it is back.
func TestRunMetricsAndReadiness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea, kumo and the agent")
	}
	re := newRunEnv(t)
	target, err := url.Parse(re.g.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The agent reaches Gitea through a proxy the test can switch off.
	var down atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "remote down", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	repoURL := strings.Replace(re.cloneURL, strings.TrimSuffix(re.g.URL, "/"), proxy.URL, 1)

	const hookSecret = "metrics-test-hook"
	p := startAgent(t, []string{"CLOUDPIPE_WEBHOOK_SECRET=" + hookSecret, "CLOUDPIPE_GITHUB_TOKEN=" + re.g.Token},
		"--repo", repoURL, "--github-api", re.g.APIURL, "--github-repo", re.g.RepoName(re.name),
		"--state-bucket", re.state, "--schedule", "@every 1s", "--agent-id", "metrics-test")
	if !waitFor(60*time.Second, func() bool { return p.get("/readyz") == http.StatusOK }) {
		t.Fatalf("agent never became ready:\n%s", p.logs.text())
	}
	down.Store(true)
	if !waitFor(10*time.Second, func() bool { return p.get("/readyz") == http.StatusServiceUnavailable }) {
		t.Fatalf("/readyz stayed ready with the Git remote down")
	}
	down.Store(false)
	if !waitFor(10*time.Second, func() bool { return p.get("/readyz") == http.StatusOK }) {
		t.Fatalf("/readyz did not recover with the Git remote back:\n%s", p.logs.text())
	}
	body := []byte(`{"ref":"refs/heads/other"}`)
	for _, sig := range []string{"sha256=00", webhook.Sign(secret.New(hookSecret), body)} {
		req, _ := http.NewRequest("POST", p.base+"/hooks/github", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		var sum float64
		for _, m := range families[name].GetMetric() {
			match := true
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				match = match && found
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
		return sum
	}
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"cloudpipe_passes_total", map[string]string{"outcome": "applied"}, 1},
		{"cloudpipe_passes_total", map[string]string{"outcome": "skipped"}, 1},
		{"cloudpipe_passes_total", map[string]string{"outcome": "failed"}, 1},
		{"cloudpipe_pass_duration_seconds", nil, 3},
		{"cloudpipe_git_polls_total", map[string]string{"outcome": "error"}, 1},
		{"cloudpipe_git_polls_total", map[string]string{"outcome": "unchanged"}, 1},
		{"cloudpipe_aws_calls_total", map[string]string{"service": "S3", "operation": "GetObject"}, 1},
		{"cloudpipe_webhook_deliveries_total", map[string]string{"outcome": "unauthorized"}, 1},
		{"cloudpipe_webhook_deliveries_total", map[string]string{"outcome": "accepted"}, 1},
		{"cloudpipe_workflows", map[string]string{"state": "ready"}, 0},
		{"process_resident_memory_bytes", nil, 1},
	}
	for _, c := range checks {
		if _, ok := families[c.name]; !ok {
			t.Errorf("metric %s missing", c.name)
			continue
		}
		if got := value(c.name, c.labels); got < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.labels, got, c.min)
		}
	}
	p.stop(t)
}

// BenchmarkAgentIdleRSS runs `agent run` on a local repository of 100
// workflows (kumo for AWS), lets it do 10 passes (one applying all 100, then
// polls of an unmoved branch) and reports the agent's resident memory then,
// and the size of the binary, built as the Dockerfile builds it. Goal: at
// most 40 MiB.
func BenchmarkAgentIdleRSS(b *testing.B) {
	kumoCfg := testenv.Kumo(b)
	asAgentRole(b)
	name := testenv.UniqueName(b)
	dir := b.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "algorithms"), os.DirFS(filepath.Join("..", "..", "algorithms"))); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "workflows"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		wf := fmt.Sprintf(`{"input_s3_name": "%s-i%d", "output_s3_name": "%s-o%d", "region": "us-east-1",
 "process": {"type": "single_run", "algorithms": [{"name": "sort-lines", "port": [], "variables": {}}]}}`, name, i, name, i)
		if err := os.WriteFile(filepath.Join(dir, "workflows", fmt.Sprintf("%s-w%d.json", name, i)), []byte(wf), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "100 workflows"}} {
		testenv.Git(b, dir, args...)
	}
	subnets, sgs := testenv.NewNetwork(b, kumoCfg)
	state := "cloudpipe-state-" + name
	// Measure the binary that ships: the Dockerfile's build.
	bin := filepath.Join(b.TempDir(), "agent")
	if out, err := exec.Command(filepath.Join("..", "..", "scripts", "build-binary"), bin).CombinedOutput(); err != nil {
		b.Fatalf("build-binary: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "bootstrap", "--state-bucket", state, "--subnets", strings.Join(subnets, ","),
		"--security-groups", strings.Join(sgs, ",")).CombinedOutput(); err != nil {
		b.Fatalf("bootstrap: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}

	for i := 0; i < b.N; i++ {
		addr := freeAddrTB(b)
		cmd := exec.Command(bin, "run", "--repo", dir, "--state-bucket", state, "--listen", addr,
			"--schedule", "@every 1s", "--log-format", "json", "--log-level", "warn", "--agent-id", "rss")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// passes is the number of passes done; ready, the workflows deployed.
		scrape := func() (passes, ready float64) {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				return 0, 0
			}
			defer resp.Body.Close()
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(resp.Body)
			if err != nil {
				return 0, 0
			}
			for _, m := range fams["cloudpipe_passes_total"].GetMetric() {
				passes += m.GetCounter().GetValue()
			}
			for _, m := range fams["cloudpipe_workflows"].GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "state" && l.GetValue() == "ready" {
						ready += m.GetGauge().GetValue()
					}
				}
			}
			return passes, ready
		}
		passes := func() float64 { n, _ := scrape(); return n }
		// Scraped once a second, as often as the passes run: polling faster
		// would measure the scrapes' garbage rather than an idle agent
		// (Prometheus scrapes every 15 s by default).
		deadline := time.Now().Add(5 * time.Minute)
		for passes() < 10 {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				b.Fatalf("agent did not do 10 passes")
			}
			time.Sleep(time.Second)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		// The memory of an agent that deployed its workflows, as its role
		// may, not of one refused at every step.
		if _, ready := scrape(); ready != 100 {
			_ = cmd.Process.Kill()
			b.Fatalf("%v of 100 workflows ready after 10 passes", ready)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		// RssFile is mostly the binary's own pages; RssAnon is the heap,
		// stacks and runtime: the part the agent's code decides.
		for _, line := range strings.Split(string(status), "\n") {
			for field, unit := range map[string]string{"VmRSS:": "rss_MiB", "RssAnon:": "rss_anon_MiB", "RssFile:": "rss_file_MiB"} {
				if rest, ok := strings.CutPrefix(line, field); ok {
					var kb float64
					fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
					b.ReportMetric(kb/1024, unit)
				}
			}
		}
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "binary_MiB")
}

func freeAddrTB(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunAppOnPrivateRepo runs `agent run` as a GitHub App on a private
// config repository: the App's installation tokens (short-lived, so
// renewed for each fetch) clone it and fetch the commit that adds a
// workflow, which is deployed and gets its status, posted as the App. The
// token is in no log line and no file of the Git cache.
func TestRunAppOnPrivateRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea, kumo and the agent")
	}
	re := newRunEnv(t)
	g, name := re.g, re.name
	g.MakePrivate(t, name)
	gitea, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	key, pemKey := testenv.NewAppKey(t)
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, []byte(pemKey), 0o600); err != nil {
		t.Fatal(err)
	}
	// Within ghinstallation's minute of margin: every use renews.
	as := &testenv.AppExchange{PublicKey: &key.PublicKey, AppID: 123, InstallationID: 456, Token: g.Token, ExpiresIn: 30 * time.Second}
	srv := httptest.NewServer(as.Handler(gitea))
	defer srv.Close()
	cacheDir := t.TempDir()
	p := startAgent(t, nil, "--repo", re.cloneURL, "--cache-dir", cacheDir,
		"--github-api", srv.URL+"/api/v1/", "--github-repo", g.RepoName(name),
		"--github-app-id", "123", "--github-installation-id", "456", "--github-app-key-file", keyFile,
		"--state-bucket", re.state, "--schedule", "@every 1s", "--agent-id", "app-test")
	if !waitFor(60*time.Second, func() bool { return p.get("/readyz") == http.StatusOK }) {
		t.Fatalf("agent never became ready on the private repository:\n%s", p.logs.text())
	}
	afterClone, _, _ := as.Counts()

	wf := name
	commit := g.CommitFiles(t, name, testenv.ChangeFiles{Message: "add " + wf, Write: map[string]string{
		"workflows/" + wf + ".json": fmt.Sprintf(`{"input_s3_name": "%s-in", "output_s3_name": "%s-out", "region": "us-east-1",
 "process": {"type": "single_run", "algorithms": [{"name": "sort-lines", "port": [], "variables": {}}]}}`, wf, wf)}})
	if !waitFor(90*time.Second, func() bool {
		var combined struct {
			Statuses []struct{ Context, Status string } `json:"statuses"`
		}
		g.API(t, "GET", "repos/"+g.RepoName(name)+"/commits/"+commit+"/status", nil, &combined)
		for _, s := range combined.Statuses {
			if s.Context == "cloudpipe/"+wf && s.Status == "success" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no success status on the commit fetched with the App's token:\n%s", p.logs.text())
	}
	p.stop(t)

	exchanges, _, problems := as.Counts()
	for _, pr := range problems {
		t.Error(pr)
	}
	// Each pass lists the refs once a second: a short-lived token is
	// exchanged again for each, not only for the statuses.
	t.Logf("%d token exchanges by the first ready pass, %d in all", afterClone, exchanges)
	if afterClone < 1 || exchanges < afterClone+2 {
		t.Errorf("%d token exchanges by the first ready pass, %d in all; want renewals for the fetches", afterClone, exchanges)
	}
	if strings.Contains(p.logs.text(), g.Token) {
		t.Error("the installation token appears in the agent's logs")
	}
	files := 0
	err = filepath.WalkDir(cacheDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		files++
		if bytes.Contains(data, []byte(g.Token)) {
			t.Errorf("%s in the Git cache holds the token", path)
		}
		return err
	})
	if err != nil || files == 0 {
		t.Fatalf("walk the Git cache: %d files, %v", files, err)
	}
}
