package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunWebhookAndStatuses runs `agent run` against Gitea and kumo with the
// GitHub token in Secrets Manager: a badly signed push webhook is refused and
// starts nothing, a signed one starts a pass at once, and the merge commit
// gets its cloudpipe/<workflow> status. SIGTERM stops the agent cleanly.
func TestRunWebhookAndStatuses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea, kumo and the agent")
	}
	kumoEnv(t)
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

	secret, err := secretsmanager.NewFromConfig(kumo).CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{
		Name: aws.String(name + "-github-token"), SecretString: aws.String(g.Token)})
	if err != nil {
		t.Fatal(err)
	}
	const hookSecret = "hook-secret-for-run-test"
	subnets, sgs := testenv.NewNetwork(t, kumo)
	state := name + "-state"
	if code, out, errOut := runAgent(t, ".", "bootstrap", "--state-bucket", state,
		"--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")); code != exitOK {
		t.Fatalf("bootstrap: %d\n%s%s", code, out, errOut)
	}

	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "run", "--repo", cloneURL, "--github-api", g.APIURL, "--github-repo", g.RepoName(name),
		"--state-bucket", state, "--listen", addr, "--schedule", "@every 1h", "--cache-dir", t.TempDir(),
		"--log-format", "json", "--log-level", "debug", "--agent-id", "run-test")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CLOUDPIPE_GITHUB_TOKEN_SECRET="+aws.ToString(secret.ARN), "CLOUDPIPE_WEBHOOK_SECRET="+hookSecret)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logWatch{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { logs.consume(stderr); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done; _ = cmd.Wait() })

	base := "http://" + addr
	if !waitFor(60*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
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
	if code := send(webhook.Sign("wrong-secret", push), "bad-1"); code != http.StatusUnauthorized {
		t.Fatalf("badly signed webhook: %d, want 401", code)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := logs.count("pass started"); n != passes {
		t.Fatalf("a badly signed webhook started a pass")
	}

	if code := send(webhook.Sign(hookSecret, push), "good-1"); code != http.StatusAccepted {
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
	out := logs.text()
	if logs.count("agent stopped") != 1 {
		t.Errorf("agent did not log a clean stop:\n%s", out)
	}
	for _, s := range []string{g.Token, hookSecret} {
		if strings.Contains(out, s) {
			t.Errorf("a secret appears in the agent's logs")
		}
	}
}
