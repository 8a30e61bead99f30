package sync_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/metrics"
	"github.com/cloudpipe/cloudpipe/notify"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// localRepo is a config repository in a local Git directory that a test
// commits to.
type localRepo struct {
	t    testing.TB
	dir  string
	repo *pipesync.Repo
}

func newLocalRepo(t testing.TB, files map[string]string) *localRepo {
	t.Helper()
	r := &localRepo{t: t, dir: t.TempDir()}
	testenv.Git(t, r.dir, "init", "-q", "-b", "main")
	r.commit(files)
	var err error
	if r.repo, err = pipesync.OpenRepo(t.Context(), gitsource.Options{URL: r.dir, Branch: "main", CacheDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return r
}

// commit makes the repository hold exactly the algorithms and files.
func (r *localRepo) commit(files map[string]string) string {
	r.t.Helper()
	_ = os.RemoveAll(filepath.Join(r.dir, "workflows"))
	for name, data := range repo(files) {
		path := filepath.Join(r.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(path, data.Data, 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	testenv.Git(r.t, r.dir, "add", "-A")
	testenv.Git(r.t, r.dir, "commit", "-q", "--allow-empty", "-m", "workflows")
	return testenv.Git(r.t, r.dir, "rev-parse", "HEAD")
}

// chatReceiver is a webhook on loopback that keeps the notifications it is
// sent.
type chatReceiver struct {
	mu     gosync.Mutex
	bodies []struct {
		Text      string       `json:"text"`
		Cloudpipe notify.Event `json:"cloudpipe"`
	}
}

func (c *chatReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b struct {
		Text      string       `json:"text"`
		Cloudpipe notify.Event `json:"cloudpipe"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.bodies = append(c.bodies, b)
}

// events returns "<event> <workflow>" of each notification, in order.
func (c *chatReceiver) events() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, b := range c.bodies {
		out = append(out, b.Cloudpipe.Event+" "+b.Cloudpipe.Workflow)
	}
	return out
}

// metricValue reads one sample from the metrics' text exposition.
func metricValue(t testing.TB, m *metrics.Metrics, sample string) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestNotificationsAndDriftReports runs real passes against kumo with a
// notification receiver on loopback: an apply and a failure, then a drift
// pass after settings were changed with the operator's client (the status
// says what was repaired, the metric counts it by kind, the resources are
// back), a drift pass with nothing changed (no drift), and the removal of
// the file (teardown). The receiver sees apply, failure, drift and teardown
// in that order, each once, though the failed workflow was retried.
func TestNotificationsAndDriftReports(t *testing.T) {
	e := newEnv(t)
	good, bad := e.name("a-good"), e.name("b-bad")
	files := map[string]string{
		good: singleRun(e.name("in"), e.name("out"), "x", `"retain_buckets": false`),
		bad:  singleRun(e.name("bad-in"), e.name("bad-out"), "x", `"account_id": "111122223333"`),
	}
	src := newLocalRepo(t, files)
	rcv := &chatReceiver{}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	n, err := notify.New(notify.Options{URL: hook.URL + "/services/T0/B0/secret"})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	posts := &statusLog{}
	now := time.Now()
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: src.repo, Reconciler: e.reconciler("agent-a"), Statuses: posts,
		Observer: m, Notifier: n, DriftEvery: 10 * time.Minute, RetryBackoff: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	pass := func(after time.Duration) pipesync.PassResult {
		t.Helper()
		now = now.Add(after)
		res := loop.Pass(t.Context())
		if res.Err != nil {
			t.Fatalf("pass: %v", res.Err)
		}
		return res
	}
	res := pass(0)
	if res.Report.Failed() != 1 {
		t.Fatalf("first pass: %d failed, want the one with another account", res.Report.Failed())
	}

	// Settings changed in the console: the queue's visibility timeout and
	// the function's timeout.
	name := provision.ResourceName(good, 0)
	url, err := e.sqs.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sqs.SetQueueAttributes(t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: url.QueueUrl,
		Attributes: map[string]string{"VisibilityTimeout": "30"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lambda.UpdateFunctionConfiguration(t.Context(), &lambda.UpdateFunctionConfigurationInput{FunctionName: &name,
		Timeout: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	res = pass(11 * time.Minute)
	if !res.Drift {
		t.Fatalf("pass after the drift interval: %+v, want a drift check", res)
	}
	var plan strings.Builder
	if err := res.Report.Plan.WritePlan(&plan); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"~ drift  " + good + ": sqs queue " + name + " VisibilityTimeout 1200 → 30 (changed outside cloudpipe)",
		"~ drift  " + good + ": lambda function " + name + " Timeout 60 → 3 (changed outside cloudpipe)",
	} {
		if !strings.Contains(plan.String(), want) {
			t.Errorf("plan of the drift pass lacks %q:\n%s", want, plan.String())
		}
	}
	states := posts.states(status.WorkflowContext(good))
	wantStatus := "success: repaired: sqs queue " + name + " attributes reset; lambda function " + name + " configuration restored"
	if len(states) == 0 || states[len(states)-1] != wantStatus {
		t.Errorf("statuses %q, want last %q", states, wantStatus)
	}
	for kind, want := range map[string]string{"sqs_queue": "1", "lambda_function": "1"} {
		if got := metricValue(t, m, `cloudpipe_drift_repairs_total{kind="`+kind+`"}`); got != want {
			t.Errorf("cloudpipe_drift_repairs_total{kind=%q} = %q, want %s", kind, got, want)
		}
	}
	attrs, err := e.sqs.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"VisibilityTimeout"}})
	if err != nil || attrs.Attributes["VisibilityTimeout"] != "1200" {
		t.Errorf("visibility after the repair: %v, %v; want 1200", attrs, err)
	}
	fn, err := e.lambda.GetFunctionConfiguration(t.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: &name})
	if err != nil || aws.ToInt32(fn.Timeout) != 60 {
		t.Errorf("function timeout after the repair: %v; want 60", err)
	}

	// A drift check with nothing changed reports no drift.
	res = pass(11 * time.Minute)
	if !res.Drift {
		t.Fatalf("third pass: %+v, want a drift check", res)
	}
	for _, r := range res.Report.Results {
		if r.Workflow == good && (r.Action != pipesync.Unchanged || len(r.Drift) != 0) {
			t.Errorf("drift check with nothing changed: %s %s %v", r.Action, r.Reason, r.Drift)
		}
	}
	if got := metricValue(t, m, `cloudpipe_drift_repairs_total{kind="sqs_queue"}`); got != "1" {
		t.Errorf("after a pass with no drift cloudpipe_drift_repairs_total{kind=sqs_queue} = %q, want still 1", got)
	}

	// The good workflow's file removed: torn down.
	src.commit(map[string]string{bad: files[bad]})
	pass(time.Minute)

	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"apply " + good, "failure " + bad, "drift " + good, "teardown " + good}
	if got := rcv.events(); !slices.Equal(got, want) {
		t.Errorf("notifications %q, want %q", got, want)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bodies) == 4 {
		if d := rcv.bodies[2]; d.Cloudpipe.Detail != strings.TrimPrefix(wantStatus, "success: ") || !strings.Contains(d.Text, "repaired") {
			t.Errorf("drift notification %+v", d)
		}
		if a := rcv.bodies[0].Cloudpipe; a.Buckets.Input != e.name("in") || a.Buckets.Output != e.name("out") || a.State != "success" {
			t.Errorf("apply notification %+v", a)
		}
	}
}

// hangingReceiver accepts a notification and answers only when released.
type hangingReceiver struct {
	entered chan struct{}
	release chan struct{}
}

func (h *hangingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	select {
	case <-h.release:
	case <-r.Context().Done():
	}
}

// TestPassDoesNotWaitOnNotifications: with a receiver that never answers,
// passes return while the sender is stuck in its POST.
func TestPassDoesNotWaitOnNotifications(t *testing.T) {
	e := newEnv(t)
	wf := e.name("wf")
	src := newLocalRepo(t, map[string]string{wf: singleRun(e.name("in"), e.name("out"), "x", `"retain_buckets": false`)})
	h := &hangingReceiver{entered: make(chan struct{}, 1), release: make(chan struct{})}
	hook := httptest.NewServer(h)
	defer func() { close(h.release); hook.Close() }()
	n, err := notify.New(notify.Options{URL: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: src.repo, Reconciler: e.reconciler("agent-a"), Notifier: n})
	if err != nil {
		t.Fatal(err)
	}
	if res := loop.Pass(t.Context()); res.Err != nil || res.Report.Failed() != 0 {
		t.Fatalf("first pass: %+v", res)
	}
	<-h.entered // the sender is now in its POST, which never ends
	src.commit(nil)
	if res := loop.Pass(t.Context()); res.Err != nil || res.Report.Failed() != 0 {
		t.Fatalf("second pass (teardown) with the sender stuck: %+v", res)
	}
}

// BenchmarkPassNotifying measures a pass that repairs drift, and so
// notifies, with no notifier, and with the receiver up, down (a closed
// port) and hanging: the
// pass does not wait on delivery, so the three should take the same
// (ms/pass, wall time of Loop.Pass; the loop's clock is the test's).
func BenchmarkPassNotifying(b *testing.B) {
	for _, tc := range []string{"none", "up", "down", "hanging"} {
		b.Run("receiver="+tc, func(b *testing.B) {
			e := newEnv(b)
			wf := e.name("wf")
			src := newLocalRepo(b, map[string]string{wf: singleRun(e.name("in"), e.name("out"), "x", `"retain_buckets": false`)})
			var url string
			switch tc {
			case "up":
				hook := httptest.NewServer(&chatReceiver{})
				defer hook.Close()
				url = hook.URL
			case "down":
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				url = "http://" + ln.Addr().String()
				ln.Close()
			case "hanging":
				h := &hangingReceiver{entered: make(chan struct{}, 1), release: make(chan struct{})}
				hook := httptest.NewServer(h)
				defer func() { close(h.release); hook.Close() }()
				url = hook.URL
			}
			var notifier pipesync.Notifier
			var n *notify.Notifier
			if url != "" {
				var err error
				if n, err = notify.New(notify.Options{URL: url}); err != nil {
					b.Fatal(err)
				}
				notifier = n
			}
			now := time.Now()
			loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: src.repo, Reconciler: e.reconciler("agent-a"), Notifier: notifier,
				DriftEvery: time.Minute, Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			if res := loop.Pass(b.Context()); res.Err != nil {
				b.Fatal(res.Err)
			}
			name := provision.ResourceName(wf, 0)
			qurl, err := e.sqs.GetQueueUrl(b.Context(), &sqs.GetQueueUrlInput{QueueName: &name})
			if err != nil {
				b.Fatal(err)
			}
			var took time.Duration
			passes := 0
			for i := 0; b.Loop(); i++ {
				passes++
				b.StopTimer()
				if _, err := e.sqs.SetQueueAttributes(b.Context(), &sqs.SetQueueAttributesInput{QueueUrl: qurl.QueueUrl,
					Attributes: map[string]string{"VisibilityTimeout": "30"}}); err != nil {
					b.Fatal(err)
				}
				now = now.Add(2 * time.Minute)
				b.StartTimer()
				start := time.Now()
				res := loop.Pass(b.Context())
				took += time.Since(start)
				if res.Err != nil || len(res.Report.Results) != 1 || len(res.Report.Results[0].Drift) != 1 {
					b.Fatalf("pass %d: %+v", i, res)
				}
			}
			b.ReportMetric(float64(took.Microseconds())/1000/float64(passes), "ms/pass")
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if n != nil {
				_ = n.Close(ctx)
			}
		})
	}
}
