// Package faultproxy is a loopback HTTP reverse proxy that injects the faults
// real AWS and Git servers produce (throttling, server errors, connection
// resets before and after a request takes effect, timeouts, latency) into a
// seeded random share of requests, so tests can show that cloudpipe converges
// through them without orphans or duplicates.
//
// It works in front of any HTTP server. For AWS requests it answers in the
// protocol of the service, read from the SigV4 credential scope and headers,
// so the SDK classifies each fault as AWS would make it: S3 gets
// <Error><Code>SlowDown</Code> with 503, JSON services a ThrottlingException,
// Lambda a TooManyRequestsException with 429, IAM and STS a query-protocol
// Throttling, EC2 a RequestLimitExceeded.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Kind is a kind of injected fault.
type Kind string

// Fault kinds. A request gets at most one of the first five; Latency is drawn
// apart and adds to any of them.
const (
	// Throttle answers the protocol's throttling error without forwarding.
	Throttle Kind = "throttle"
	// ServerError answers 500 without forwarding.
	ServerError Kind = "server_error"
	// ResetBefore resets the connection without forwarding: the request had
	// no effect and the client sees a connection error.
	ResetBefore Kind = "reset_before"
	// ResetAfter forwards the request, discards the answer and resets the
	// connection: the request took effect but the client cannot know, the
	// hardest case for idempotency.
	ResetAfter Kind = "reset_after"
	// Timeout holds the request for Options.TimeoutHold (longer than the
	// client waits), then resets the connection without forwarding.
	Timeout Kind = "timeout"
	// Latency delays the request by up to Options.MaxLatency.
	Latency Kind = "latency"
)

// Kinds lists every fault kind, in the order Stats prints them.
var Kinds = []Kind{Throttle, ServerError, ResetBefore, ResetAfter, Timeout, Latency}

// Options configure a Proxy. Rates are probabilities per request, from 0 to
// 1; the exclusive kinds (all but Latency) must sum to at most 1.
type Options struct {
	// Seed makes the sequence of decisions repeatable: the n-th request the
	// proxy decides on gets the same fault for the same seed. With
	// concurrent clients, which request is n-th depends on scheduling.
	Seed int64

	Throttle    float64
	ServerError float64
	ResetBefore float64
	ResetAfter  float64
	Timeout     float64
	Latency     float64

	// MaxLatency bounds the delay of a Latency fault, drawn uniformly from
	// [0, MaxLatency). Default 20ms.
	MaxLatency time.Duration
	// TimeoutHold is how long a Timeout fault holds the request before it
	// drops it; set it above the client's per-attempt timeout. The hold also
	// ends when the client gives up. Default 2s.
	TimeoutHold time.Duration

	// Match, if set, limits faults to the requests it accepts; the others
	// are forwarded untouched and take no random draws, so they do not shift
	// the seeded sequence. The body has been read and can be read again.
	Match func(*http.Request) bool
	// Transport forwards requests; default: a dedicated http.Transport.
	Transport http.RoundTripper
}

func (o *Options) validate() error {
	var errs []error
	sum := 0.0
	for _, r := range []struct {
		kind Kind
		rate float64
	}{
		{Throttle, o.Throttle}, {ServerError, o.ServerError}, {ResetBefore, o.ResetBefore},
		{ResetAfter, o.ResetAfter}, {Timeout, o.Timeout}, {Latency, o.Latency},
	} {
		if r.rate < 0 || r.rate > 1 || r.rate != r.rate {
			errs = append(errs, fmt.Errorf("rate of %s is %v, want 0..1", r.kind, r.rate))
		}
		if r.kind != Latency {
			sum += r.rate
		}
	}
	if sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("rates of the exclusive faults sum to %v, want at most 1", sum))
	}
	if o.MaxLatency < 0 || o.TimeoutHold < 0 {
		errs = append(errs, errors.New("MaxLatency and TimeoutHold must not be negative"))
	}
	if o.MaxLatency == 0 {
		o.MaxLatency = 20 * time.Millisecond
	}
	if o.TimeoutHold == 0 {
		o.TimeoutHold = 2 * time.Second
	}
	return errors.Join(errs...)
}

// Stats counts what the proxy did since it started.
type Stats struct {
	Requests  int          // requests received
	Forwarded int          // requests passed to the target (ResetAfter included)
	Faults    map[Kind]int // faults injected, by kind
	// ByOp counts faults by operation (see Operation) and kind, to tell
	// which class of call (create, delete, inventory write...) got what.
	ByOp map[string]map[Kind]int
}

// Total returns the number of faults injected, Latency excluded.
func (s Stats) Total() int {
	n := 0
	for k, v := range s.Faults {
		if k != Latency {
			n += v
		}
	}
	return n
}

// String prints the counts on one line, in the order of Kinds.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d forwarded", s.Requests, s.Forwarded)
	for _, k := range Kinds {
		fmt.Fprintf(&b, ", %s %d", k, s.Faults[k])
	}
	return b.String()
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	opts   Options
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	done   chan struct{} // closed by Close: ends Timeout holds

	mu       sync.Mutex // guards the fields below
	rng      *rand.Rand // one source under the mutex, so decisions follow the seed
	enabled  bool
	closed   bool
	inflight sync.WaitGroup // handlers running; Add only under mu while !closed
	stats    Stats
	seq      int // request counter, for request IDs in fault answers
}

// New starts a proxy on 127.0.0.1 (a free port) that forwards to target, a
// base URL such as "http://127.0.0.1:4566". Faults are enabled from the
// start. It returns an error for an invalid target or options.
func New(target string, o Options) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not a base URL", target)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	if o.Transport == nil {
		// Its own transport: faults reset client connections, never pooled
		// upstream ones. No compression, so bodies pass through as sent.
		o.Transport = &http.Transport{
			Proxy:               nil,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		opts:    o,
		target:  u,
		ln:      ln,
		done:    make(chan struct{}),
		rng:     rand.New(rand.NewSource(o.Seed)),
		enabled: true,
		stats:   Stats{Faults: map[Kind]int{}, ByOp: map[string]map[Kind]int{}},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }() // ends when Close closes the listener
	return p, nil
}

// URL is the proxy's base URL, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetEnabled turns fault injection on or off; while off, every request is
// forwarded untouched and no random draw is taken, so a test can run a clean
// pass and resume the seeded sequence afterwards.
func (p *Proxy) SetEnabled(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enabled = on
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Faults = make(map[Kind]int, len(p.stats.Faults))
	for k, v := range p.stats.Faults {
		s.Faults[k] = v
	}
	s.ByOp = make(map[string]map[Kind]int, len(p.stats.ByOp))
	for op, m := range p.stats.ByOp {
		c := make(map[Kind]int, len(m))
		for k, v := range m {
			c[k] = v
		}
		s.ByOp[op] = c
	}
	return s
}

// Close stops the proxy: held requests are dropped, open connections closed,
// and Close returns once every handler has returned.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	err := p.srv.Close()
	p.inflight.Wait()
	if t, ok := p.opts.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return err
}

// decision is what the proxy does with one request.
type decision struct {
	fault   Kind // "" to forward normally
	latency time.Duration
	op      string
	id      int
}

// decide draws the request's fault. Every decided request takes exactly
// three draws, whatever their outcome, so the n-th request's fault depends
// only on the seed and n.
func (p *Proxy) decide(r *http.Request, body []byte) (decision, bool) {
	matched := p.opts.Match == nil || p.opts.Match(r)
	if matched && p.opts.Match != nil {
		r.Body = io.NopCloser(bytes.NewReader(body)) // Match may have read it
	}
	op := Operation(r, body)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return decision{}, false
	}
	p.inflight.Add(1)
	p.seq++
	p.stats.Requests++
	d := decision{op: op, id: p.seq}
	if !p.enabled || !matched {
		return d, true
	}
	kind, lat, amount := p.rng.Float64(), p.rng.Float64(), p.rng.Float64()
	for _, c := range []struct {
		kind Kind
		rate float64
	}{
		{Throttle, p.opts.Throttle}, {ServerError, p.opts.ServerError}, {ResetBefore, p.opts.ResetBefore},
		{ResetAfter, p.opts.ResetAfter}, {Timeout, p.opts.Timeout},
	} {
		if kind < c.rate {
			d.fault = c.kind
			break
		}
		kind -= c.rate
	}
	if lat < p.opts.Latency {
		d.latency = time.Duration(amount * float64(p.opts.MaxLatency))
		p.count(op, Latency)
	}
	if d.fault != "" {
		p.count(op, d.fault)
	}
	return d, true
}

// count adds one fault of kind for op; p.mu is held.
func (p *Proxy) count(op string, kind Kind) {
	p.stats.Faults[kind]++
	m := p.stats.ByOp[op]
	if m == nil {
		m = map[Kind]int{}
		p.stats.ByOp[op] = m
	}
	m[kind]++
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// The client went away while sending: nothing to answer.
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	d, ok := p.decide(r, body)
	if !ok {
		reset(w)
		return
	}
	defer p.inflight.Done()

	if d.latency > 0 && !p.wait(r.Context(), d.latency) {
		return
	}
	switch d.fault {
	case Throttle:
		writeFault(w, r, Throttle, d.id)
	case ServerError:
		writeFault(w, r, ServerError, d.id)
	case ResetBefore:
		reset(w)
	case Timeout:
		// Hold until the client gives up (its context ends and the server
		// notices the closed connection), the hold ends, or Close.
		p.wait(r.Context(), p.opts.TimeoutHold)
		reset(w)
	case ResetAfter:
		resp, err := p.forward(r, body)
		if err == nil {
			// Read the whole answer, so the target has finished the request
			// before the client learns nothing of it.
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		reset(w)
	default:
		resp, err := p.forward(r, body)
		if err != nil {
			http.Error(w, "faultproxy: forward: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		h := w.Header()
		for k, vs := range resp.Header {
			if !hopByHop[http.CanonicalHeaderKey(k)] {
				h[k] = vs
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}
}

// wait sleeps d and reports true, or reports false as soon as ctx ends or
// the proxy closes.
func (p *Proxy) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-p.done:
		return false
	}
}

// hopByHop are the headers that belong to one connection, not the request.
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// IsHopByHop reports whether header (canonical form) belongs to one
// connection, so a proxy must not pass it on.
func IsHopByHop(header string) bool { return hopByHop[header] }

// Outbound is r, whose body was read into body, readdressed to target (a
// base URL) for a reverse proxy to send: the connection's own headers are
// dropped, and the Host header is kept as the client sent it, since SigV4
// signs it. awsrules forwards with it too.
func Outbound(r *http.Request, target *url.URL, body []byte) *http.Request {
	out := r.Clone(r.Context())
	out.URL.Scheme = target.Scheme
	out.URL.Host = target.Host
	out.URL.Path = strings.TrimSuffix(target.Path, "/") + r.URL.Path
	if r.URL.RawPath != "" {
		out.URL.RawPath = strings.TrimSuffix(target.Path, "/") + r.URL.RawPath
	}
	out.RequestURI = ""
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	out.Close = false
	for k := range out.Header {
		if hopByHop[k] {
			out.Header.Del(k)
		}
	}
	// The body is already here; waiting for 100 Continue would only add a
	// round trip.
	out.Header.Del("Expect")
	return out
}

// forward sends the request to the target and counts it.
func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, error) {
	p.mu.Lock()
	p.stats.Forwarded++
	p.mu.Unlock()
	return p.opts.Transport.RoundTrip(Outbound(r, p.target, body))
}

// reset closes the client's connection with a TCP RST, without an answer.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		// HTTP/2 has no hijacking; aborting the handler resets the stream.
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Linger 0 makes Close send RST instead of FIN: the client sees
		// "connection reset by peer", as when a load balancer drops it.
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
