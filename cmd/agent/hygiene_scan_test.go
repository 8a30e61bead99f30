package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// This file holds the machinery of TestSecretHygiene: canary secrets, the
// forms they would take if leaked, the collection of everything the agent
// emits, a recording proxy in front of kumo and the scan.

// canary is one secret value handed to the agent. Reports name it by label,
// never by value.
type canary struct {
	label string
	value string
}

// randomString returns n characters drawn from alphabet with crypto/rand, so
// every run has its own values and no fixed string can match by accident.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

const (
	upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	// base64ish includes '/' and '+', as real AWS secret keys do, so the
	// URL-encoded forms differ from the raw value and are searched too.
	base64ish = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
	alnum     = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// needles returns the forms in which value would appear if it leaked, by
// name: as is, URL-encoded (query and path), JSON-escaped, hex, and base64
// (standard and URL alphabets) at each of the three byte alignments it could
// have inside a longer encoded document.
func needles(value string) map[string]string {
	out := map[string]string{"raw": value, "hex": hex.EncodeToString([]byte(value))}
	add := func(name, s string) {
		if !slices.Contains(slices.Collect(maps.Values(out)), s) {
			out[name] = s
		}
	}
	add("url-query", url.QueryEscape(value))
	add("url-path", url.PathEscape(value))
	if j, err := json.Marshal(value); err == nil {
		add("json", string(j[1:len(j)-1]))
	}
	for _, enc := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for k := range 3 {
			// With k bytes before the value, the characters from
			// ceil(8k/6) up to floor(8(k+n)/6) depend on the value alone,
			// whatever surrounds it.
			s := enc.enc.EncodeToString(append(make([]byte, k), value...))
			from, to := (8*k+5)/6, 8*(k+len(value))/6
			add(fmt.Sprintf("%s@%d", enc.name, k), s[from:to])
		}
	}
	return out
}

// source is one collected piece of what the agent emitted or left behind.
type source struct {
	kind string // a category, for the summary: "process output", "aws request body", ...
	name string // which one, for a report
	data []byte
}

// collector gathers sources from the test and from the proxy's handler.
type collector struct {
	mu      sync.Mutex
	sources []source
}

func (c *collector) add(kind, name string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sources = append(c.sources, source{kind: kind, name: name, data: data})
}

func (c *collector) all() []source {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sources)
}

// leak is one canary found in one source.
type leak struct {
	source   source
	canary   string // label
	encoding string
	offset   int
}

// scan searches every source for every form of every canary.
func scan(sources []source, canaries []canary) []leak {
	var out []leak
	for _, c := range canaries {
		forms := needles(c.value)
		names := slices.Sorted(maps.Keys(forms))
		for _, s := range sources {
			for _, n := range names {
				if i := bytes.Index(s.data, []byte(forms[n])); i >= 0 {
					out = append(out, leak{source: s, canary: c.label, encoding: n, offset: i})
				}
			}
		}
	}
	return out
}

// redactor replaces every form of every canary (see needles) with its
// label, for anything a failing test prints: test logs are public.
type redactor []canary

func (r redactor) redact(s string) string {
	for _, c := range r {
		if c.value == "" {
			continue
		}
		forms := needles(c.value)
		// The raw value first: it may contain an encoded form of itself.
		s = strings.ReplaceAll(s, c.value, "[canary "+c.label+"]")
		for _, n := range slices.Sorted(maps.Keys(forms)) {
			s = strings.ReplaceAll(s, forms[n], "[canary "+c.label+", "+n+"]")
		}
	}
	return s
}

// context returns up to 80 bytes around a leak, with the canaries redacted,
// so a report shows where the value sat without repeating it.
func (r redactor) context(l leak) string {
	from, to := max(0, l.offset-80), min(len(l.source.data), l.offset+80)
	return r.redact(string(l.source.data[from:to]))
}

// testLog is the test's own log: every line goes to t.Log and to a buffer
// that is scanned with the rest, since test output is published too.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Logf(format string, args ...any) {
	l.t.Helper()
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.buf.WriteString(msg)
	l.buf.WriteByte('\n')
	l.mu.Unlock()
	l.t.Log(msg)
}

// Write makes testLog an io.Writer, for the proxy's error log.
func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLog) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

// recordedRequest is one request that went through the recording proxy.
type recordedRequest struct {
	op   string // faultproxy.Operation: "ECS.RegisterTaskDefinition", "Lambda.CreateFunction"...
	uri  string
	body []byte
	// keyID is the access key ID the request was signed with, from its
	// SigV4 credential scope: which principal sent it. It is kept apart
	// from what the scan searches.
	keyID string
}

// recordingProxy is a loopback reverse proxy in front of kumo that keeps
// every request's URI and raw body. The agent is a separate process, so SDK
// middleware in the test cannot see its requests; this can. Headers are
// kept out: a SigV4 Authorization header legitimately carries the access
// key ID, and X-Amz-Security-Token the session token.
type recordingProxy struct {
	URL string

	mu   sync.Mutex
	reqs []recordedRequest
}

func newRecordingProxy(t *testing.T, target string, errLog io.Writer) *recordingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	// A killed Lambda handler leaves a cancelled long poll behind: log that
	// where it is scanned too, not on the test's stderr.
	rp.ErrorLog = log.New(errLog, "kumo proxy: ", 0)
	p := &recordingProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.mu.Lock()
		p.reqs = append(p.reqs, recordedRequest{op: faultproxy.Operation(r, body), uri: r.Method + " " + r.RequestURI, body: body,
			keyID: signingKeyID(r)})
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// signingKeyID is the access key ID in a SigV4 Authorization header
// ("AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ..."),
// or "" for an unsigned request.
func signingKeyID(r *http.Request) string {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(cred, "/")
	return id
}

// signedWith counts the recorded requests signed with keyID.
func (p *recordingProxy) signedWith(keyID string) int {
	n := 0
	for _, r := range p.requests() {
		if r.keyID == keyID {
			n++
		}
	}
	return n
}

func (p *recordingProxy) requests() []recordedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

// TestNeedles checks that the scan finds a value in each form it claims to
// search, embedded at any offset: otherwise TestSecretHygiene could pass by
// looking for the wrong strings.
func TestNeedles(t *testing.T) {
	secret := "pw/" + randomString(30, base64ish) + "+="
	canaries := []canary{{label: "secret", value: secret}}
	for pad := range 3 {
		prefix := strings.Repeat("x", pad)
		for name, data := range map[string][]byte{
			"raw":       []byte(`{"v":"` + secret + `"}`),
			"query":     []byte("a=b&v=" + url.QueryEscape(secret)),
			"path":      []byte("/v/" + url.PathEscape(secret) + "/x"),
			"hex":       []byte(hex.EncodeToString([]byte(prefix + secret))),
			"base64":    []byte(base64.StdEncoding.EncodeToString([]byte(prefix + secret + "tail"))),
			"base64url": []byte(base64.URLEncoding.EncodeToString([]byte(prefix + secret))),
			"base64raw": []byte(base64.RawStdEncoding.EncodeToString([]byte(prefix + secret))),
		} {
			if got := scan([]source{{name: name, data: data}}, canaries); len(got) == 0 {
				t.Errorf("%s at offset %d: not found", name, pad)
			}
		}
	}
	if got := scan([]source{{name: "clean", data: []byte(strings.Repeat(secret[:10], 50))}}, canaries); len(got) != 0 {
		t.Errorf("found %d leaks in data without the secret", len(got))
	}
	if got := (redactor(canaries)).redact("a " + secret + " b"); got != "a [canary secret] b" {
		t.Errorf("redact: %q", got)
	}
	encoded := "x=" + url.QueryEscape(secret) + "&y=" + base64.StdEncoding.EncodeToString([]byte("x"+secret))
	if got := (redactor(canaries)).redact(encoded); len(scan([]source{{data: []byte(got)}}, canaries)) != 0 {
		t.Errorf("redact left an encoded form: %q", got)
	}
}
