package webhook_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/webhook"
)

var key = secret.New("s3cr3t-webhook-value")

func TestVerify(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	good := webhook.Sign(key, body)
	tests := []struct {
		name   string
		header string
		body   []byte
		want   bool
	}{
		{"valid", good, body, true},
		{"missing", "", body, false},
		{"sha1 form", "sha1=" + good[len("sha256="):], body, false},
		{"not hex", "sha256=zz", body, false},
		{"other body", good, []byte(`{"ref":"refs/heads/evil"}`), false},
		{"other secret", webhook.Sign(secret.New("other"), body), body, false},
		{"truncated", good[:len(good)-2], body, false},
		{"upper-case hex", "sha256=" + strings.ToUpper(good[len("sha256="):]), body, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := webhook.Verify(key, tt.body, tt.header); got != tt.want {
				t.Errorf("Verify(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

type recorder struct {
	mu     sync.Mutex
	events []webhook.Event
}

func (r *recorder) add(e webhook.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) n() int              { r.mu.Lock(); defer r.mu.Unlock(); return len(r.events) }

func deliver(t *testing.T, h http.Handler, method, event, delivery string, body []byte, sig string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "/hooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestHandler(t *testing.T) {
	push := []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"bot/config"}}`)
	pr := []byte(`{"action":"opened","number":7,"pull_request":{"number":7},"repository":{"full_name":"bot/config"}}`)
	big := []byte(`{"ref":"refs/heads/main","pad":"` + strings.Repeat("x", webhook.MaxBody) + `"}`)
	tests := []struct {
		name       string
		method     string
		event      string
		delivery   string
		body       []byte
		sig        string
		wantCode   int
		wantEvents int
	}{
		{"push accepted", "POST", "push", "d1", push, webhook.Sign(key, push), 202, 1},
		{"same delivery ignored", "POST", "push", "d1", push, webhook.Sign(key, push), 200, 0},
		{"pull request accepted", "POST", "pull_request", "d2", pr, webhook.Sign(key, pr), 202, 1},
		{"unsigned refused", "POST", "push", "d3", push, "", 401, 0},
		{"bad signature refused", "POST", "push", "d4", push, webhook.Sign(secret.New("wrong"), push), 401, 0},
		{"oversized refused", "POST", "push", "d5", big, webhook.Sign(key, big), 413, 0},
		{"malformed refused", "POST", "push", "d6", []byte(`{"ref":`), webhook.Sign(key, []byte(`{"ref":`)), 400, 0},
		{"other event ignored", "POST", "issues", "d7", []byte(`{}`), webhook.Sign(key, []byte(`{}`)), 202, 0},
		{"GET refused", "GET", "push", "d8", nil, "", 405, 0},
	}
	rec := &recorder{}
	h, err := webhook.New(key, rec.add, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.n()
			w := deliver(t, h, tt.method, tt.event, tt.delivery, tt.body, tt.sig)
			if w.Code != tt.wantCode {
				t.Errorf("status %d, want %d (%s)", w.Code, tt.wantCode, w.Body)
			}
			if got := rec.n() - before; got != tt.wantEvents {
				t.Errorf("%d events dispatched, want %d", got, tt.wantEvents)
			}
		})
	}
	if e := rec.events[0]; e.Kind != "push" || e.Ref != "refs/heads/main" || e.After != "abc123" || e.Repo != "bot/config" || e.Delivery != "d1" {
		t.Errorf("push event parsed as %+v", e)
	}
	if e := rec.events[1]; e.Kind != "pull_request" || e.Number != 7 || e.Action != "opened" {
		t.Errorf("pull_request event parsed as %+v", e)
	}
}

func TestNewRefusesEmptySecret(t *testing.T) {
	if _, err := webhook.New(secret.Value{}, func(webhook.Event) {}, nil); err == nil {
		t.Fatal("New with an empty secret succeeded")
	}
}

// FuzzHandler throws arbitrary bodies and headers at the handler: it must not
// panic, must answer 401 to anything not signed with the secret, and must
// dispatch only verified push and pull_request events.
func FuzzHandler(f *testing.F) {
	f.Add("push", []byte(`{"ref":"refs/heads/main","after":"abc"}`), true)
	f.Add("pull_request", []byte(`{"action":"opened","number":1}`), true)
	f.Add("push", []byte(`{"ref":1}`), true)
	f.Add("push", []byte(`not json`), false)
	f.Fuzz(func(t *testing.T, event string, body []byte, signed bool) {
		rec := &recorder{}
		h, err := webhook.New(key, rec.add, nil)
		if err != nil {
			t.Fatal(err)
		}
		sig := "sha256=00"
		if signed {
			sig = webhook.Sign(key, body)
		}
		w := deliver(t, h, "POST", event, "d", body, sig)
		if !signed && w.Code != 401 && w.Code != 413 {
			t.Fatalf("unsigned delivery got %d", w.Code)
		}
		if rec.n() > 0 && (!signed || (event != "push" && event != "pull_request")) {
			t.Fatalf("dispatched %v for event %q signed=%v", rec.events, event, signed)
		}
	})
}
