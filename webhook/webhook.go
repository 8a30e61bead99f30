// Package webhook receives GitHub push and pull_request webhooks: it checks
// their X-Hub-Signature-256 in constant time, ignores repeated deliveries and
// tells the agent which events should start a pass.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/cloudpipe/cloudpipe/internal/secret"
)

// MaxBody bounds a delivery's size. GitHub caps payloads at 25 MB, but the
// fields the agent reads are near the top of small documents: a push event
// of a config repository is a few KiB, so anything larger is refused.
const MaxBody = 1 << 20

// Event is what the agent needs of a delivery.
type Event struct {
	Kind     string // "push" or "pull_request"
	Delivery string // X-GitHub-Delivery
	Ref      string // push: the ref pushed, e.g. refs/heads/main
	After    string // push: the new head
	Action   string // pull_request: opened, synchronize, ...
	Number   int    // pull_request: the number
	Repo     string // owner/name
}

// Handler serves the webhook endpoint.
type Handler struct {
	key secret.Value // the webhook secret, the HMAC key of every delivery
	// OnEvent is called, without waiting for its work, for each verified,
	// new push or pull_request delivery.
	onEvent func(Event)
	log     *slog.Logger
	// OnOutcome, if set, is called with the outcome of every delivery (for
	// metrics). Set it before serving.
	OnOutcome func(Outcome)

	mu   sync.Mutex // guards seen and order
	seen map[string]bool
	// order remembers delivery ids oldest first, so the set stays bounded.
	order []string
}

// maxRemembered bounds how many delivery ids are kept for de-duplication;
// GitHub redelivers within minutes, so a few thousand is plenty.
const maxRemembered = 4096

// ErrNoSecret is returned by New when the secret is empty: an unsigned
// webhook endpoint would let anyone start passes.
var ErrNoSecret = errors.New("webhook secret is empty")

// New returns a Handler that calls onEvent for each verified new event.
func New(key secret.Value, onEvent func(Event), log *slog.Logger) (*Handler, error) {
	if key.IsZero() {
		return nil, ErrNoSecret
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{key: key, onEvent: onEvent, log: log, seen: map[string]bool{}}, nil
}

// Outcome names what happened to a delivery, for metrics and logs.
type Outcome string

// Outcomes of a delivery.
const (
	Accepted   Outcome = "accepted"
	Duplicate  Outcome = "duplicate"
	Ignored    Outcome = "ignored" // verified, but an event the agent does not act on
	BadRequest Outcome = "bad_request"
	Unsigned   Outcome = "unauthorized"
	TooLarge   Outcome = "too_large"
)

// ServeHTTP verifies and dispatches one delivery. Unsigned or badly signed
// requests get 401 and start nothing; accepted ones get 202 at once.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	outcome, code := h.serve(r)
	if h.OnOutcome != nil {
		h.OnOutcome(outcome)
	}
	h.log.Debug("webhook delivery", "outcome", outcome, "delivery", r.Header.Get("X-GitHub-Delivery"), "event", r.Header.Get("X-GitHub-Event"))
	w.WriteHeader(code)
	io.WriteString(w, string(outcome)+"\n")
}

func (h *Handler) serve(r *http.Request) (Outcome, int) {
	if r.Method != http.MethodPost {
		return BadRequest, http.StatusMethodNotAllowed
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return BadRequest, http.StatusBadRequest
	}
	if len(body) > MaxBody {
		return TooLarge, http.StatusRequestEntityTooLarge
	}
	// The signature is checked before anything of the body is parsed.
	if !Verify(h.key, body, r.Header.Get("X-Hub-Signature-256")) {
		return Unsigned, http.StatusUnauthorized
	}
	ev, err := Parse(r.Header.Get("X-GitHub-Event"), body)
	if err != nil {
		return BadRequest, http.StatusBadRequest
	}
	if ev.Kind == "" {
		return Ignored, http.StatusAccepted
	}
	ev.Delivery = r.Header.Get("X-GitHub-Delivery")
	if ev.Delivery != "" && !h.remember(ev.Delivery) {
		return Duplicate, http.StatusOK
	}
	h.onEvent(ev)
	return Accepted, http.StatusAccepted
}

// remember records a delivery id and reports whether it was new.
func (h *Handler) remember(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[id] {
		return false
	}
	h.seen[id] = true
	h.order = append(h.order, id)
	if len(h.order) > maxRemembered {
		delete(h.seen, h.order[0])
		h.order = h.order[1:]
	}
	return true
}

// Verify reports whether header is body's HMAC-SHA256 under key (the
// webhook secret), in GitHub's "sha256=<hex>" form. The comparison takes
// constant time.
func Verify(key secret.Value, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(key.Reveal()))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// Sign returns the X-Hub-Signature-256 value for body; for tests and tools.
func Sign(key secret.Value, body []byte) string {
	mac := hmac.New(sha256.New, []byte(key.Reveal()))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Parse reads the fields the agent needs from a delivery of the given event
// type. Event types other than push and pull_request give a zero Event and
// no error.
func Parse(eventType string, body []byte) (Event, error) {
	var p struct {
		Ref         string `json:"ref"`
		After       string `json:"after"`
		Action      string `json:"action"`
		Number      int    `json:"number"`
		PullRequest *struct {
			Number int `json:"number"`
		} `json:"pull_request"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
	}
	switch eventType {
	case "push", "pull_request":
	default:
		return Event{}, nil
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, err
	}
	ev := Event{Kind: eventType, Repo: p.Repository.FullName}
	switch eventType {
	case "push":
		if p.Ref == "" {
			return Event{}, errors.New("push event without ref")
		}
		ev.Ref, ev.After = p.Ref, p.After
	case "pull_request":
		ev.Action, ev.Number = p.Action, p.Number
		if ev.Number == 0 && p.PullRequest != nil {
			ev.Number = p.PullRequest.Number
		}
	}
	return ev, nil
}
