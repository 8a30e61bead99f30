// Package localecs plays Amazon ECS and AWS Batch on one machine: a reverse
// proxy in front of the kumo AWS emulator that answers RunTask, ListTasks,
// DescribeTasks and StopTask itself and runs each task as a local process,
// plays Batch's job definitions and jobs (a job runs as a task does) and
// what kumo lacks of its compute environments and job queues, and forwards
// every other request to kumo unchanged.
//
// kumo registers task definitions but never runs a task, ignores RunTask's
// clientToken and has no ListTasks; it stores Batch resources but never
// runs a job. The local demo (cmd/demo) and its tests need all of it to
// carry an upload through a pipeline. Nothing runs in a container: the
// process a task or job starts is whatever Options.Start builds.
package localecs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// Defaults applied by Listen to zero Options fields.
const (
	// DefaultStopTimeout is how long a stopped task's process has between
	// SIGTERM and SIGKILL. ECS waits 30 seconds; a local demo that is being
	// shut down should not.
	DefaultStopTimeout = 5 * time.Second
	// DefaultTokenTTL is how long a RunTask clientToken is remembered: ECS
	// keeps it for 24 hours.
	DefaultTokenTTL = 24 * time.Hour
	// DefaultStoppedRetention is how long a stopped task is still listed and
	// described: ECS shows stopped tasks for at least an hour.
	DefaultStoppedRetention = time.Hour
)

// maxRecorded bounds the requests remembered per operation, so a proxy that
// runs for days (SQS long polls every 20 seconds) does not grow without end.
const maxRecorded = 1000

// ecsTargetPrefix starts the X-Amz-Target header of every ECS API call.
const ecsTargetPrefix = "AmazonEC2ContainerServiceV20141113."

// Options configure a Proxy. Upstream and Start are required.
type Options struct {
	// Addr is the address to listen on, such as "127.0.0.1:4566" or, in
	// tests, "127.0.0.1:0". Ignored when Listener is set.
	Addr string
	// Listener, if set, is where the proxy serves instead of a listener on
	// Addr, for a caller that must hold the address before it can build the
	// rest of Options. Close closes it.
	Listener net.Listener
	// Upstream is the base URL of the kumo server requests are forwarded
	// to, such as kumo.NewServer().URL.
	Upstream string
	// Start builds the process of one task. It must build it with
	// exec.CommandContext(ctx, ...): ctx ends when the task is stopped
	// (StopTask or Close), and the proxy then sends the process SIGTERM and,
	// StopTimeout later, SIGKILL. The proxy starts the command and waits for
	// it; Start must not. An error (or a failed start) stops the task at
	// once with a stopped reason, as ECS does when it cannot start a
	// container. Start is called with the proxy's lock held, so that a
	// repeated clientToken can never start a second batch: it must not
	// call the Proxy.
	Start func(ctx context.Context, t TaskSpec) (*exec.Cmd, error)
	// StopTimeout is the grace between SIGTERM and SIGKILL; default
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// TokenTTL is how long a RunTask clientToken is honoured; default
	// DefaultTokenTTL.
	TokenTTL time.Duration
	// StoppedRetention is how long a stopped task, or a finished Batch
	// job, stays visible; default DefaultStoppedRetention.
	StoppedRetention time.Duration
	// OnTask, if set, is called with a snapshot of a task whenever it
	// starts or stops, from the proxy's goroutines; it must be safe for
	// concurrent use and return quickly.
	OnTask func(Task)
	// Logger receives a Debug record per answered ECS call and a Warn
	// record per failed forward; nil discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Authorize, if set, is asked before a task starts whether its
	// execution role may do what ECS does with it: read each referenced
	// secret, create the awslogs log stream, pull from a private ECR
	// repository. It returns nil when allowed and otherwise the denial
	// (IAM's message); the task then stops with ResourceInitializationError,
	// as ECS stops it. It must not hold locks the Proxy's calls need.
	Authorize func(ctx context.Context, role, action, resource string) error

	// BatchTransition is how long a Batch compute environment or job queue
	// stays CREATING, UPDATING or DELETING; default DefaultBatchTransition.
	BatchTransition time.Duration
	// JobStartDelay is how long a Batch job stays RUNNABLE once its queue
	// can place it, before it starts: on AWS an instance must launch first
	// (minutes). Default 0.
	JobStartDelay time.Duration
	// OnJob, if set, is called with a snapshot of a Batch job at each
	// change of its status, in order, from the proxy's goroutines; it must
	// be safe for concurrent use and return quickly.
	OnJob func(Job)
	// AssumeRole, if set, is asked before a task starts whether the service
	// principal ecs-tasks.amazonaws.com may assume the task's execution
	// role and task role (ARNs), with the condition keys ECS passes
	// (aws:SourceAccount, aws:SourceArn): whether each role's trust policy
	// lets it. It returns nil when it may and otherwise why not; the task
	// then stops before it starts, as ECS stops it. It must not hold locks
	// the Proxy's calls need.
	AssumeRole func(ctx context.Context, roleARN, service string, keys map[string]string) error
	// InstanceTypes are the EC2 instance types DescribeInstanceTypes
	// describes (ec2.go); kumo has none.
	InstanceTypes []InstanceType
}

// Request is one API call the proxy saw.
type Request struct {
	Op          string // the action of X-Amz-Target or Batch's operation, such as "RunTask", "SubmitJob" or "SendMessageBatch"
	ClientToken string // RunTask's clientToken; empty for other operations
	Time        time.Time
}

// Proxy is a running reverse proxy in front of kumo that plays ECS. It is
// safe for concurrent use. Close stops it, its tasks and its goroutines.
type Proxy struct {
	opts     Options
	log      *slog.Logger
	upstream *url.URL
	client   *http.Client // for the requests the proxy makes to kumo itself
	rp       *httputil.ReverseProxy
	ln       net.Listener
	srv      *http.Server
	served   chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error

	tasks   sync.WaitGroup // one per started process, done when it has been waited for
	jobRuns sync.WaitGroup // one per submitted Batch job, done when it has ended

	// mu guards the fields below. RunTask holds it from its token check to
	// its last tasks.Add, so a duplicate token never starts a second batch
	// and Close never misses a task it must wait for.
	mu       sync.Mutex
	closed   bool                 // Close was called: RunTask starts nothing
	requests map[string][]Request // by op, the last maxRecorded
	defs     map[string]*taskDef  // by "family:revision"
	table    map[string]*task     // by task ARN
	order    []string             // task ARNs, oldest first
	tokens   map[string]*runToken // by cluster ARN + "\x00" + clientToken

	// Batch (batch.go): what kumo loses of compute environments and job
	// queues, by name; job definitions by "name:revision" and the last
	// revision of each name; jobs by ID, and their IDs oldest first.
	envs         map[string]*batchResource
	queues       map[string]*batchResource
	jobDefs      map[string]*jobDef
	jobDefRevs   map[string]int
	jobs         map[string]*job
	jobOrder     []string
	batchChanged chan struct{} // closed and replaced at every change of an environment or queue
}

// Listen starts a Proxy on opts.Addr that forwards to opts.Upstream. The
// caller must Close it.
func Listen(opts Options) (*Proxy, error) {
	if opts.Upstream == "" {
		return nil, errors.New("localecs: no upstream URL")
	}
	if opts.Start == nil {
		return nil, errors.New("localecs: no Start function for tasks")
	}
	up, err := url.Parse(opts.Upstream)
	if err != nil || up.Scheme == "" || up.Host == "" {
		return nil, fmt.Errorf("localecs: upstream %q is not a base URL", opts.Upstream)
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.StoppedRetention <= 0 {
		opts.StoppedRetention = DefaultStoppedRetention
	}
	if opts.BatchTransition <= 0 {
		opts.BatchTransition = DefaultBatchTransition
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", opts.Addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
		}
	}
	// Its own transport, so Close can drop the idle connections to kumo
	// without touching http.DefaultTransport's.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	p := &Proxy{
		opts:     opts,
		log:      opts.Logger.With("component", "localecs"),
		upstream: up,
		client:   &http.Client{Transport: transport},
		ln:       ln,
		served:   make(chan struct{}),
		requests: map[string][]Request{},
		defs:     map[string]*taskDef{},
		table:    map[string]*task{},
		tokens:   map[string]*runToken{},

		envs:         map[string]*batchResource{},
		queues:       map[string]*batchResource{},
		jobDefs:      map[string]*jobDef{},
		jobDefRevs:   map[string]int{},
		jobs:         map[string]*job{},
		batchChanged: make(chan struct{}),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			// Keep the Host the client used: to kumo the request looks as if
			// kumo itself listened here (it builds URLs, such as queue URLs,
			// and virtual-hosted bucket names from Host).
			pr.Out.Host = pr.In.Host
		},
		Transport:    transport,
		ErrorHandler: p.forwardFailed,
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.served)
		// Serve returns http.ErrServerClosed after Close; any other error
		// means the listener broke, and requests then fail visibly.
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("proxy stopped serving", "err", err)
		}
	}()
	return p, nil
}

// URL returns the proxy's base URL, "http://HOST:PORT".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Close stops every task and job (SIGTERM, then SIGKILL after
// StopTimeout), waits for their processes, then stops serving. It is safe to call more than
// once; later calls return the first one's result.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Proxy) close() error {
	p.mu.Lock()
	p.closed = true
	for _, t := range p.table {
		t.cancel()
	}
	for _, j := range p.jobs {
		p.stopJobLocked(j, stopClosed, "The local Batch shut down")
	}
	p.mu.Unlock()
	p.jobRuns.Wait()
	p.tasks.Wait()
	// Long polls (SQS receive, Lambda runtime next) never go idle, so
	// Shutdown is given a moment and then the rest are cut.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = p.srv.Close()
	}
	<-p.served
	p.client.CloseIdleConnections()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("close proxy: %w", err)
	}
	return nil
}

// Requests returns the calls of operation op (the action named by
// X-Amz-Target, such as "RunTask") the proxy has seen, oldest first; at most
// the last 1000.
func (p *Proxy) Requests(op string) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests[op]...)
}

// ServeHTTP answers ECS's task calls and Batch's, and forwards everything
// else to kumo.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.serveEC2(w, r) {
		return
	}
	if op, ok := strings.CutPrefix(faultproxy.Operation(r, nil), "Batch."); ok {
		p.serveBatch(w, r, op)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op := target
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		op = target[i+1:]
	}
	if !strings.HasPrefix(target, ecsTargetPrefix) {
		if op != "" {
			p.record(Request{Op: op, Time: p.opts.Now()})
		}
		p.rp.ServeHTTP(w, r)
		return
	}
	switch op {
	case "RegisterTaskDefinition", "DeregisterTaskDefinition", "RunTask", "ListTasks", "DescribeTasks", "StopTask":
	default:
		p.record(Request{Op: op, Time: p.opts.Now()})
		p.rp.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "read request body: "+err.Error())
		return
	}
	if len(body) > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "InvalidParameterException", "request body too large")
		return
	}
	switch op {
	case "RegisterTaskDefinition":
		p.record(Request{Op: op, Time: p.opts.Now()})
		p.registerTaskDefinition(w, r, body)
	case "DeregisterTaskDefinition":
		p.record(Request{Op: op, Time: p.opts.Now()})
		p.deregisterTaskDefinition(w, r, body)
	case "RunTask":
		p.runTask(w, r, body) // records the call with its clientToken
	case "ListTasks":
		p.record(Request{Op: op, Time: p.opts.Now()})
		p.listTasks(w, body)
	case "DescribeTasks":
		p.record(Request{Op: op, Time: p.opts.Now()})
		p.describeTasks(w, body)
	case "StopTask":
		p.record(Request{Op: op, Time: p.opts.Now()})
		p.stopTask(w, body)
	}
}

// maxBody bounds the ECS request bodies the proxy reads itself; a task
// definition is at most 64 KiB in ECS.
const maxBody = 1 << 20

func (p *Proxy) record(req Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := append(p.requests[req.Op], req)
	if len(rs) > maxRecorded {
		rs = rs[len(rs)-maxRecorded:]
	}
	p.requests[req.Op] = rs
}

// forwardFailed answers a request kumo could not be reached for.
func (p *Proxy) forwardFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away (a long poll cancelled at shutdown): there is
		// nobody to answer.
		return
	}
	p.log.Warn("forward to kumo failed", "method", r.Method, "path", r.URL.Path, "err", err)
	w.WriteHeader(http.StatusBadGateway)
}

// callUpstream sends an ECS request with body to kumo, with the headers of
// the client's request r, and returns kumo's answer.
func (p *Proxy) callUpstream(ctx context.Context, r *http.Request, target string, body []byte) (*http.Response, []byte, error) {
	u := *p.upstream
	u.Path = "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if r != nil {
		req.Header = r.Header.Clone()
		req.Host = r.Host
	} else {
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		// kumo routes JSON-protocol calls by X-Amz-Target, but reads the
		// service from the signature's scope for some: give it one.
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=localecs/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0")
	}
	req.Header.Set("X-Amz-Target", target)
	// Let the transport negotiate compression and undo it: the proxy reads
	// these answers itself.
	req.Header.Del("Accept-Encoding")
	return p.send(req, body)
}

// send sends req, whose body is body, to kumo and reads the whole answer.
func (p *Proxy) send(req *http.Request, body []byte) (*http.Response, []byte, error) {
	req.Header.Del("Content-Length")
	req.ContentLength = int64(len(body))
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}
