package faultproxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

func newProxy(t *testing.T, target string, o faultproxy.Options) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// kumoVia returns a config for the emulator that goes through p, with a
// retryer that never retries, so each call shows the fault it got.
func kumoVia(t *testing.T, p *faultproxy.Proxy) aws.Config {
	t.Helper()
	cfg := testenv.Kumo(t)
	cfg.BaseEndpoint = aws.String(p.URL())
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	return cfg
}

// fastRetryer is the standard retryer with short waits and no retry quota,
// so a test of "eventually succeeds" takes milliseconds.
func fastRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 10
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	})
}

// call is one SDK call of a service, named as Operation names it.
type call struct {
	op string
	do func(context.Context, aws.Config) error
}

// calls covers every protocol cloudpipe speaks: REST-XML (S3), REST-JSON
// (Lambda), JSON (SQS, ECS, CloudWatch Logs), query (IAM, STS) and EC2.
var calls = []call{
	{"S3.CreateBucket", func(ctx context.Context, cfg aws.Config) error {
		_, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("faultproxy-never-created")})
		return err
	}},
	{"S3.ListObjectsV2", func(ctx context.Context, cfg aws.Config) error {
		_, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("faultproxy-none")})
		return err
	}},
	{"SQS.CreateQueue", func(ctx context.Context, cfg aws.Config) error {
		_, err := sqs.NewFromConfig(cfg).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("faultproxy-never-created")})
		return err
	}},
	{"Lambda.GetFunction", func(ctx context.Context, cfg aws.Config) error {
		_, err := lambda.NewFromConfig(cfg).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("faultproxy-none")})
		return err
	}},
	{"ECS.ListClusters", func(ctx context.Context, cfg aws.Config) error {
		_, err := ecs.NewFromConfig(cfg).ListClusters(ctx, &ecs.ListClustersInput{})
		return err
	}},
	{"CloudWatch Logs.DescribeLogGroups", func(ctx context.Context, cfg aws.Config) error {
		_, err := cloudwatchlogs.NewFromConfig(cfg).DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{})
		return err
	}},
	{"IAM.GetRole", func(ctx context.Context, cfg aws.Config) error {
		_, err := iam.NewFromConfig(cfg).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("faultproxy-none")})
		return err
	}},
	{"STS.GetCallerIdentity", func(ctx context.Context, cfg aws.Config) error {
		_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	}},
	{"EC2.DescribeVpcs", func(ctx context.Context, cfg aws.Config) error {
		_, err := ec2.NewFromConfig(cfg).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
		return err
	}},
}

// wantCodes is the error code each protocol's fault answer must parse to.
var wantCodes = map[string]map[faultproxy.Kind]string{
	"S3":              {faultproxy.Throttle: "SlowDown", faultproxy.ServerError: "InternalError"},
	"SQS":             {faultproxy.Throttle: "ThrottlingException", faultproxy.ServerError: "InternalFailure"},
	"Lambda":          {faultproxy.Throttle: "TooManyRequestsException", faultproxy.ServerError: "ServiceException"},
	"ECS":             {faultproxy.Throttle: "ThrottlingException", faultproxy.ServerError: "InternalFailure"},
	"CloudWatch Logs": {faultproxy.Throttle: "ThrottlingException", faultproxy.ServerError: "InternalFailure"},
	"IAM":             {faultproxy.Throttle: "Throttling", faultproxy.ServerError: "ServiceFailure"},
	"STS":             {faultproxy.Throttle: "Throttling", faultproxy.ServerError: "ServiceFailure"},
	"EC2":             {faultproxy.Throttle: "RequestLimitExceeded", faultproxy.ServerError: "InternalError"},
}

// TestThrottleAndServerErrorAsTheSDKSeesThem checks that each protocol's
// answer parses to the code AWS sends, and that the standard retryer
// classifies it as AWS's would: throttling as throttling, 500 as retryable.
func TestThrottleAndServerErrorAsTheSDKSeesThem(t *testing.T) {
	throttles := retry.IsErrorThrottles(retry.DefaultThrottles)
	retryables := retry.IsErrorRetryables(retry.DefaultRetryables)
	for _, kind := range []faultproxy.Kind{faultproxy.Throttle, faultproxy.ServerError} {
		o := faultproxy.Options{Seed: 1}
		if kind == faultproxy.Throttle {
			o.Throttle = 1
		} else {
			o.ServerError = 1
		}
		p := newProxy(t, testenv.KumoURL(t), o)
		cfg := kumoVia(t, p)
		for _, c := range calls {
			t.Run(string(kind)+"/"+c.op, func(t *testing.T) {
				err := c.do(t.Context(), cfg)
				var ae smithy.APIError
				if !errors.As(err, &ae) {
					t.Fatalf("err = %v, want an API error", err)
				}
				service, _, _ := strings.Cut(c.op, ".")
				if want := wantCodes[service][kind]; ae.ErrorCode() != want {
					t.Errorf("code %q (%v), want %q", ae.ErrorCode(), err, want)
				}
				var re *awshttp.ResponseError
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want an HTTP response error", err)
				}
				isThrottle := throttles.IsErrorThrottle(err) == aws.TrueTernary
				if isThrottle != (kind == faultproxy.Throttle) {
					t.Errorf("status %d: standard retryer says throttle=%v", re.HTTPStatusCode(), isThrottle)
				}
				if kind == faultproxy.ServerError && (re.HTTPStatusCode() != 500 || retryables.IsErrorRetryable(err) != aws.TrueTernary) {
					t.Errorf("status %d, retryable %v: want a retryable 500", re.HTTPStatusCode(), retryables.IsErrorRetryable(err))
				}
			})
		}
		st := p.Stats()
		for _, c := range calls {
			if st.ByOp[c.op][kind] != 1 {
				t.Errorf("%s: ByOp[%q] = %v, want one %s (ops: %v)", kind, c.op, st.ByOp[c.op], kind, st.ByOp)
			}
		}
		if st.Forwarded != 0 || st.Faults[kind] != len(calls) {
			t.Errorf("%s: stats %v, want %d faults and nothing forwarded", kind, st, len(calls))
		}
	}
}

// TestStandardRetryerGetsThrough: with half the requests throttled and a
// tenth failing, the SDK's standard retryer still completes every call.
func TestStandardRetryerGetsThrough(t *testing.T) {
	p := newProxy(t, testenv.KumoURL(t), faultproxy.Options{Seed: 7, Throttle: 0.5, ServerError: 0.1})
	cfg := kumoVia(t, p)
	cfg.Retryer = fastRetryer
	for i := range 5 {
		for _, c := range calls {
			if strings.HasPrefix(c.op, "S3.") || c.op == "SQS.CreateQueue" {
				continue // these two answer errors of their own (no bucket, a queue to create)
			}
			if err := c.do(t.Context(), cfg); err != nil && !isNotFound(err) {
				t.Fatalf("round %d: %s: %v", i, c.op, err)
			}
		}
	}
	st := p.Stats()
	t.Logf("faults: %v", st)
	if st.Faults[faultproxy.Throttle] == 0 || st.Faults[faultproxy.ServerError] == 0 {
		t.Errorf("no faults injected: %v", st)
	}
}

// isNotFound accepts the answers kumo gives for the names the calls above
// look up, which do not exist.
func isNotFound(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (strings.Contains(ae.ErrorCode(), "NotFound") || ae.ErrorCode() == "NoSuchEntity")
}

// TestResets shows what each kind of reset means for a request: ResetBefore
// never reaches the server, ResetAfter takes effect although the client sees
// only an error. A client without retries sees both as connection errors.
func TestResets(t *testing.T) {
	direct := sqs.NewFromConfig(testenv.Kumo(t))
	for _, tc := range []struct {
		kind        faultproxy.Kind
		o           faultproxy.Options
		wantCreated bool
	}{
		{faultproxy.ResetBefore, faultproxy.Options{ResetBefore: 1}, false},
		{faultproxy.ResetAfter, faultproxy.Options{ResetAfter: 1}, true},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			p := newProxy(t, testenv.KumoURL(t), tc.o)
			name := testenv.UniqueName(t)
			_, err := sqs.NewFromConfig(kumoVia(t, p)).CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
			if err == nil || !strings.Contains(err.Error(), "connection reset") {
				t.Fatalf("CreateQueue through %s: %v, want a connection reset", tc.kind, err)
			}
			if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
				t.Errorf("the standard retryer would not retry %v", err)
			}
			_, gerr := direct.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
			if created := gerr == nil; created != tc.wantCreated {
				t.Errorf("queue created = %v (%v), want %v", created, gerr, tc.wantCreated)
			}
			if st := p.Stats(); st.Faults[tc.kind] != 1 || st.ByOp["SQS.CreateQueue"][tc.kind] != 1 {
				t.Errorf("stats %v (by op %v), want one %s on SQS.CreateQueue", st, st.ByOp, tc.kind)
			}
		})
	}
}

// TestTimeout: the proxy holds the request past the client's per-attempt
// timeout and never forwards it.
func TestTimeout(t *testing.T) {
	p := newProxy(t, testenv.KumoURL(t), faultproxy.Options{Timeout: 1, TimeoutHold: 5 * time.Second})
	cfg := kumoVia(t, p)
	cfg.HTTPClient = awshttp.NewBuildableClient().WithTimeout(300 * time.Millisecond)
	name := testenv.UniqueName(t)
	start := time.Now()
	_, err := sqs.NewFromConfig(cfg).CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("CreateQueue: %v, want a client timeout", err)
	}
	if took < 300*time.Millisecond || took > 4*time.Second {
		t.Errorf("the call took %v, want about the client's 300ms", took)
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
		t.Errorf("the standard retryer would not retry %v", err)
	}
	if _, err := sqs.NewFromConfig(testenv.Kumo(t)).GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)}); err == nil {
		t.Errorf("a timed-out request reached the server")
	}
	// Close ends the hold of a request still waiting, at once.
	held := make(chan error, 1)
	go func() {
		resp, err := http.Get(p.URL() + "/held")
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	waitFor(t, func() bool { return p.Stats().Requests == 2 })
	start = time.Now()
	p.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with a held request", took)
	}
	if err := <-held; err == nil {
		t.Errorf("a request held by a closed proxy got an answer")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLatency(t *testing.T) {
	p := newProxy(t, testenv.KumoURL(t), faultproxy.Options{Latency: 1, MaxLatency: 40 * time.Millisecond})
	cfg := kumoVia(t, p)
	client := sts.NewFromConfig(cfg)
	for range 10 {
		if _, err := client.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatal(err)
		}
	}
	st := p.Stats()
	if st.Faults[faultproxy.Latency] != 10 || st.Total() != 0 || st.Forwarded != 10 {
		t.Errorf("stats %v, want 10 delayed and forwarded, no other fault", st)
	}
}

// outcome is what a plain HTTP client saw of one request, and whether the
// backend got it.
type outcome struct {
	status  int // 0 when the client got no answer
	reached bool
	slow    bool // the answer took at least the timeout hold
}

// run sends n numbered requests one at a time, each on a new connection
// (Go's transport retries some failed requests on reused connections, which
// would take extra draws), and returns what each saw.
func run(t *testing.T, seed int64, n int) ([]outcome, faultproxy.Stats) {
	t.Helper()
	hits := &pathSet{m: map[string]bool{}}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.add(r.URL.Path)
		fmt.Fprint(w, "ok")
	}))
	defer backend.Close()
	// Long enough that an instant reset is never mistaken for a held
	// request, even on a loaded machine.
	const hold = 400 * time.Millisecond
	p := newProxy(t, backend.URL, faultproxy.Options{
		Seed: seed, Throttle: 0.1, ServerError: 0.1, ResetBefore: 0.1, ResetAfter: 0.1, Timeout: 0.05,
		Latency: 0.2, MaxLatency: time.Millisecond, TimeoutHold: hold,
	})
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	out := make([]outcome, n)
	for i := range out {
		path := fmt.Sprintf("/req/%d", i)
		start := time.Now()
		resp, err := client.Get(p.URL() + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out[i].status = resp.StatusCode
		}
		out[i].slow = time.Since(start) >= hold
		out[i].reached = hits.has(path)
	}
	return out, p.Stats()
}

// pathSet is the set of paths a backend received, safe for its goroutines.
type pathSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *pathSet) add(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[p] = true
}

func (s *pathSet) has(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[p]
}

// TestDeterministicFromSeed: the same seed gives the same fault for the n-th
// request, another seed a different sequence, and the counts follow the
// rates.
func TestDeterministicFromSeed(t *testing.T) {
	const n = 300
	a, sa := run(t, 42, n)
	b, sb := run(t, 42, n)
	c, _ := run(t, 43, n)
	diff := 0
	for i := range n {
		// Compare what the fault decides (answer, forwarded or not); how
		// long an answer took depends on the machine's load as well.
		if a[i].status != b[i].status || a[i].reached != b[i].reached {
			t.Errorf("request %d: %+v then %+v with the same seed", i, a[i], b[i])
		}
		if a[i] != c[i] {
			diff++
		}
	}
	if diff == 0 {
		t.Errorf("seeds 42 and 43 gave the same %d outcomes", n)
	}
	if fmt.Sprint(sa.Faults) != fmt.Sprint(sb.Faults) {
		t.Errorf("stats differ with the same seed: %v and %v", sa, sb)
	}
	// Each outcome is what its kind promises.
	var seen = map[string]int{}
	for _, o := range a {
		switch {
		case o.status == http.StatusOK && o.reached:
			seen["ok"]++
		case o.status == http.StatusTooManyRequests && !o.reached:
			seen[string(faultproxy.Throttle)]++
		case o.status == http.StatusInternalServerError && !o.reached:
			seen[string(faultproxy.ServerError)]++
		case o.status == 0 && o.reached:
			seen[string(faultproxy.ResetAfter)]++
		case o.status == 0 && !o.reached && o.slow:
			seen[string(faultproxy.Timeout)]++
		case o.status == 0 && !o.reached:
			seen[string(faultproxy.ResetBefore)]++
		default:
			t.Errorf("unexpected outcome %+v", o)
		}
	}
	for _, k := range []faultproxy.Kind{faultproxy.Throttle, faultproxy.ServerError, faultproxy.ResetBefore, faultproxy.ResetAfter, faultproxy.Timeout} {
		if seen[string(k)] != sa.Faults[k] {
			t.Errorf("%s: clients saw %d, proxy counted %d", k, seen[string(k)], sa.Faults[k])
		}
		if sa.Faults[k] == 0 {
			t.Errorf("no %s in %d requests", k, n)
		}
	}
	t.Logf("seed 42, %d requests: %v", n, sa)
	if sa.Requests != n || sa.Forwarded != seen["ok"]+seen[string(faultproxy.ResetAfter)] {
		t.Errorf("stats %v do not add up with outcomes %v", sa, seen)
	}
}

func TestSetEnabled(t *testing.T) {
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer backend.Close()
	p := newProxy(t, backend.URL, faultproxy.Options{Throttle: 1})
	p.SetEnabled(false)
	for range 20 {
		resp, err := http.Get(p.URL())
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("disabled proxy: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	p.SetEnabled(true)
	resp, err := http.Get(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("enabled proxy in front of a plain server: %s, want 429 with Retry-After", resp.Status)
	}
	if st := p.Stats(); st.Requests != 21 || st.Faults[faultproxy.Throttle] != 1 || hits.Load() != 20 {
		t.Errorf("stats %v, backend hits %d: want 21 requests, 1 throttled, 20 forwarded", st, hits.Load())
	}
}

func TestMatchLimitsFaults(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer backend.Close()
	p := newProxy(t, backend.URL, faultproxy.Options{ServerError: 1, Match: func(r *http.Request) bool {
		b, _ := io.ReadAll(r.Body) // Match may read the body; it is forwarded whole anyway
		return strings.Contains(string(b), "fail me")
	}})
	for _, body := range []string{"fail me", "let me through"} {
		resp, err := http.Post(p.URL(), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantStatus := http.StatusOK
		if body == "fail me" {
			wantStatus = http.StatusInternalServerError
		}
		if resp.StatusCode != wantStatus || wantStatus == http.StatusOK && string(got) != body {
			t.Errorf("%q: %s %q", body, resp.Status, got)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []faultproxy.Options{
		{Throttle: -0.1},
		{Latency: 1.5},
		{Throttle: 0.6, ResetAfter: 0.6},
		{TimeoutHold: -time.Second},
	} {
		if p, err := faultproxy.New("http://127.0.0.1:1", o); err == nil {
			p.Close()
			t.Errorf("New accepted %+v", o)
		}
	}
	if _, err := faultproxy.New("127.0.0.1:1", faultproxy.Options{}); err == nil {
		t.Errorf("New accepted a target without a scheme")
	}
}

// TestGitThroughProxy puts the proxy in front of a real Git smart-HTTP
// server (git http-backend): clean, git clones through it; throttled, git
// fails with the 429 instead of hanging or half-writing.
func TestGitThroughProxy(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	root := t.TempDir()
	repo := filepath.Join(root, "config.git")
	gitRun(t, root, "init", "-q", "--bare", "-b", "main", repo)
	work := filepath.Join(root, "work")
	gitRun(t, root, "init", "-q", "-b", "main", work)
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, work, "add", ".")
	gitRun(t, work, "commit", "-q", "-m", "first")
	gitRun(t, work, "push", "-q", repo, "main")

	backend := httptest.NewServer(&cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer backend.Close()
	p := newProxy(t, backend.URL, faultproxy.Options{Throttle: 1})

	p.SetEnabled(false)
	gitRun(t, root, "clone", "-q", p.URL()+"/config.git", filepath.Join(root, "clone"))
	p.SetEnabled(true)
	out, err := gitCmd(root, "ls-remote", p.URL()+"/config.git").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "429") {
		t.Errorf("git ls-remote through a throttling proxy: %v\n%s", err, out)
	}
	st := p.Stats()
	if st.ByOp["Git.info-refs"][faultproxy.Throttle] != 1 {
		t.Errorf("by op: %v, want one throttled Git.info-refs", st.ByOp)
	}
}

func gitCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_TERMINAL_PROMPT=0")
	return cmd
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	if out, err := gitCmd(dir, args...).CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestOperationNamesBatchRequests: Batch is REST-JSON, one POST per
// operation on /v1/<operation, lowercased>, and its tag operations share
// /v1/tags/{resourceArn} by method.
func TestOperationNamesBatchRequests(t *testing.T) {
	arn := url.PathEscape("arn:aws:batch:us-east-1:000000000000:job-queue/q")
	for _, c := range []struct{ method, path, want string }{
		{http.MethodPost, "/v1/submitjob", "Batch.SubmitJob"},
		{http.MethodPost, "/v1/describejobdefinitions", "Batch.DescribeJobDefinitions"},
		{http.MethodPost, "/v1/updatecomputeenvironment", "Batch.UpdateComputeEnvironment"},
		{http.MethodGet, "/v1/tags/" + arn, "Batch.ListTagsForResource"},
		{http.MethodPost, "/v1/tags/" + arn, "Batch.TagResource"},
		{http.MethodDelete, "/v1/tags/" + arn, "Batch.UntagResource"},
		{http.MethodPost, "/v1/nosuchoperation", "Batch.POST nosuchoperation"},
	} {
		r, err := http.NewRequest(c.method, "http://127.0.0.1"+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/batch/aws4_request, SignedHeaders=host, Signature=0")
		if got := faultproxy.Operation(r, nil); got != c.want {
			t.Errorf("%s %s: Operation = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}
