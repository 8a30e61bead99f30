// Package awsrules is a loopback HTTP reverse proxy, for tests, that sits in
// front of the kumo AWS emulator and refuses what real AWS refuses but kumo
// accepts: a queue name reused less than 60 s after its deletion, a
// visibility timeout past 12 hours, overlapping S3 notification rules,
// another account's bucket, a task definition's ephemeral storage outside
// Fargate's range. Each rule answers in the service's own error format (see
// faultproxy.WriteError), so the AWS SDK returns the error AWS would, and
// cites the AWS documentation page that decides it. Where kumo lacks what
// the product relies on, the proxy plays AWS itself: CreateServiceLinkedRole
// through operations kumo has (rewrites, slr.go), and Lambda's asynchronous
// invocation configuration and what it does with an event the function
// failed (invokeconfig.go, asyncinvoke.go).
//
// It keeps what the rules need to remember (deleted queues, received
// messages) from the requests and answers that pass through it, so every
// client of a test must go through the same proxy.
package awsrules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// Options configure a Proxy.
type Options struct {
	// Now is the clock of the time-based rules; default time.Now. Tests
	// move it forward instead of sleeping out SQS's 60 s or 12 h.
	Now func() time.Time
	// ForeignBuckets are bucket names the proxy treats as owned by another
	// AWS account: S3 refuses this account's calls on them.
	ForeignBuckets []string
	// Transport forwards requests; default: a dedicated http.Transport.
	Transport http.RoundTripper
	// IAM, if set, authorizes every request a role signs (see IAM).
	IAM *IAM
	// DisabledRegions are regions not enabled in the emulated account (an
	// opt-in region nobody turned on): every request signed for one is
	// refused as AWS refuses it, as if the credentials were invalid.
	DisabledRegions []string
	// Listener, if set, is where the proxy serves instead of a free port
	// of 127.0.0.1 (the demo serves on kumo's 4566). Close closes it.
	Listener net.Listener
	// AsyncRetryDelay is the wait before the first retry of an
	// asynchronous invocation whose function failed, doubled for the
	// second (see asyncinvoke.go); default DefaultAsyncRetryDelay. Lambda
	// waits about one and two minutes, which tests do not sit out.
	AsyncRetryDelay time.Duration
}

// Proxy is a running rules proxy. Its methods are safe for concurrent use.
type Proxy struct {
	opts    Options
	target  *url.URL
	ln      net.Listener
	srv     *http.Server
	foreign map[string]bool
	iam     *authority // nil without Options.IAM

	mu       sync.Mutex           // guards the fields below
	deleted  map[string]time.Time // queue name -> when DeleteQueue succeeded
	received map[string]time.Time // receipt handle -> when ReceiveMessage returned it
	seq      int                  // request counter, for request IDs in refusals

	// homes (guarded by mu too): resource -> regions it exists in, see region.go.
	homes map[resKey]map[string]bool

	// lambda is Lambda's asynchronous invocation, which kumo lacks in
	// part: event invoke configurations, retries and destinations
	// (invokeconfig.go, asyncinvoke.go).
	lambda lambdaAsync
	// bg counts the goroutines the proxy started on its own (retries of
	// asynchronous invocations, deliveries to destinations); Close closes
	// closing and waits for them.
	bg        sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
}

// New starts a proxy on 127.0.0.1 (a free port) that forwards to target, a
// base URL such as kumo's "http://127.0.0.1:PORT".
func New(target string, o Options) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("awsrules: target %q is not a base URL", target)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AsyncRetryDelay <= 0 {
		o.AsyncRetryDelay = DefaultAsyncRetryDelay
	}
	if o.Transport == nil {
		// No compression, so bodies pass through as sent and the rules can
		// read the answers they learn from.
		o.Transport = &http.Transport{DisableCompression: true, IdleConnTimeout: 30 * time.Second}
	}
	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("awsrules: listen: %w", err)
		}
	}
	p := &Proxy{
		opts:     o,
		target:   u,
		ln:       ln,
		foreign:  map[string]bool{},
		deleted:  map[string]time.Time{},
		received: map[string]time.Time{},
		closing:  make(chan struct{}),
	}
	for _, b := range o.ForeignBuckets {
		p.foreign[b] = true
	}
	if o.IAM != nil {
		if o.IAM.Evaluator == nil || o.IAM.Account == "" {
			_ = ln.Close()
			return nil, fmt.Errorf("awsrules: IAM needs an Evaluator and an Account")
		}
		p.iam = newAuthority(*o.IAM, u, o.Transport)
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }() // ends when Close closes the listener
	return p, nil
}

// URL is the proxy's base URL, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy and closes its connections. Retries of
// asynchronous invocations not yet made are dropped.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	// Under the lock background starts goroutines under: none starts
	// after this.
	p.lambda.mu.Lock()
	p.closeOnce.Do(func() { close(p.closing) })
	p.lambda.mu.Unlock()
	p.bg.Wait()
	if t, ok := p.opts.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	if err != nil {
		return fmt.Errorf("awsrules: close: %w", err)
	}
	return nil
}

// call is one request going through the proxy, with what the rules read.
type call struct {
	r    *http.Request
	op   string // faultproxy.Operation: "SQS.CreateQueue", "S3.GetBucketTagging"...
	body []byte
	now  time.Time
}

// answer is the target's answer to a call, read whole so an observer can
// learn from it or a rule can replace it.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// A check refuses a call before it reaches the target: it returns the error
// AWS answers, or nil to let the call through.
type check func(p *Proxy, c call) *faultproxy.APIError

// A respond answers a call in place of the target, for an operation kumo
// lacks or plays otherwise than AWS; out is the body to forward, should it
// forward after all. An error that is a *refusal is answered as the
// service's error; any other means the target could not be reached.
type respond func(p *Proxy, c call, out []byte) (*answer, error)

// refusal is the error AWS answers a call with, as a respond returns it.
type refusal struct{ e faultproxy.APIError }

func (r *refusal) Error() string { return r.e.Code + ": " + r.e.Message }

func refuse(e faultproxy.APIError) error { return &refusal{e} }

// An observe learns from a call and its answer, and may replace the answer
// where AWS answers otherwise than kumo.
type observe func(p *Proxy, c call, a *answer)

// checks and observers hold the rules by operation; region.go adds its own.
var (
	checks = map[string][]check{
		"SQS.CreateQueue":                       {checkQueueDeletedRecently},
		"SQS.ChangeMessageVisibility":           {checkVisibilityLimit},
		"S3.PutBucketNotificationConfiguration": {checkNotificationOverlap},
		"S3.GetBucketTagging":                   {checkForeignBucket},
		"ECS.RegisterTaskDefinition":            {checkEphemeralStorage},
	}
	observers = map[string][]observe{
		"SQS.DeleteQueue":       {noteQueueDeleted},
		"SQS.ReceiveMessage":    {noteReceived},
		"SQS.DeleteMessage":     {forgetReceived},
		"S3.CreateBucket":       {createOwnedBucketInUSEast1},
		"S3.PostObject":         {noteUploadKey},
		"Lambda.DeleteFunction": {forgetInvokeConfigs},
	}
	responders = map[string]respond{
		"Lambda.PutFunctionEventInvokeConfig":    putInvokeConfig,
		"Lambda.UpdateFunctionEventInvokeConfig": updateInvokeConfig,
		"Lambda.GetFunctionEventInvokeConfig":    getInvokeConfig,
		"Lambda.DeleteFunctionEventInvokeConfig": deleteInvokeConfig,
		"Lambda.ListFunctionEventInvokeConfigs":  listInvokeConfigs,
		"Lambda.Invoke":                          invoke,
		"IAM.AttachRolePolicy":                   attachRolePolicy,
		"IAM.ListAttachedRolePolicies":           listAttachedRolePolicies,
		"IAM.DetachRolePolicy":                   detachRolePolicy,
	}
)

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if isRuntimeAPI(r) {
		p.serveRuntime(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away while sending: nothing to answer
	}
	c := call{r: r, op: faultproxy.Operation(r, body), body: body, now: p.opts.Now()}
	if e := p.checkRegionEnabled(r); e != nil {
		faultproxy.WriteError(w, r, *e, p.requestID())
		return
	}
	role := ""
	if p.iam != nil {
		role = roleOfKey(accessKeyID(r))
	}
	if role != "" {
		if e := p.authorize(r, role, c); e != nil {
			faultproxy.WriteError(w, r, *e, p.requestID())
			return
		}
	}
	for _, chk := range checks[c.op] {
		if e := chk(p, c); e != nil {
			faultproxy.WriteError(w, r, *e, p.requestID())
			return
		}
	}
	fwd := kmsRequestToKumo(c, requestARNsToKumo(c, body))
	rw, rewritten := rewrites[c.op]
	if rewritten {
		var e *faultproxy.APIError
		if fwd, e = rw.request(c, fwd); e != nil {
			faultproxy.WriteError(w, r, *e, p.requestID())
			return
		}
	}
	var a *answer
	if answer := responders[c.op]; answer != nil {
		a, err = answer(p, c, fwd)
	} else {
		a, err = p.forward(r, fwd)
	}
	var no *refusal
	if errors.As(err, &no) {
		faultproxy.WriteError(w, r, no.e, p.requestID())
		return
	}
	if err != nil {
		http.Error(w, "awsrules: forward: "+err.Error(), http.StatusBadGateway)
		return
	}
	if rewritten {
		if e := rw.answer(c, a); e != nil {
			faultproxy.WriteError(w, r, *e, p.requestID())
			return
		}
	}
	if p.iam != nil && strings.HasPrefix(c.op, "IAM.") {
		sameAccountInIAM(a, p.iam.cfg.Account)
	}
	for _, obs := range observers[c.op] {
		obs(p, c, a)
	}
	answerARNsInRegion(c, a)
	if p.iam != nil {
		p.iam.learn(c, a)
		if role != "" {
			p.iam.hideMissingKey(r.Context(), role, c, a)
			p.iam.functionTagsNeedListTags(r.Context(), role, c, a)
		}
	}
	h := w.Header()
	for k, vs := range a.header {
		if !faultproxy.IsHopByHop(http.CanonicalHeaderKey(k)) {
			h[k] = vs
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

func (p *Proxy) requestID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	return "awsrules-" + strconv.Itoa(p.seq)
}

// forward sends the request to the target and reads its answer.
//
// A request runs to its end even when the client gives up waiting, as it
// does at AWS: what it created is then there, and the rules learn of it.
func (p *Proxy) forward(r *http.Request, body []byte) (*answer, error) {
	out := faultproxy.Outbound(r, p.target, body).WithContext(context.WithoutCancel(r.Context()))
	resp, err := p.opts.Transport.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("round trip: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}
