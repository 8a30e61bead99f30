package status

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	cpbackoff "github.com/cloudpipe/cloudpipe/internal/backoff"
)

const (
	// maxRateLimitWait caps one wait for a rate limit, so that a reset
	// time far in the future (or a skewed clock) is re-checked every few
	// minutes rather than trusted for an hour. After a capped wait go-github
	// answers from its own record of the limit without a request, and the
	// wait starts again: rate-limited statuses are delayed, never dropped.
	maxRateLimitWait = 5 * time.Minute
	// defaultSecondaryWait is how long GitHub asks clients to wait after a
	// secondary rate limit that names no Retry-After.
	defaultSecondaryWait = time.Minute
	// serverErrorAttempts bounds the attempts of a request that keeps
	// failing with a 5xx: an outage is reported, not waited out, and the
	// next pass posts again.
	serverErrorAttempts = 4
	// backoffBase and backoffMax shape the exponential backoff between
	// attempts after a server error, and the least wait after a rate limit.
	backoffBase = 500 * time.Millisecond
	backoffMax  = time.Minute
)

// call runs one API request, fn, each attempt with its own timeout, and
// retries it while retryDelay says so, waiting in between. Errors come back
// with the token removed.
func (g *GitHub) call(ctx context.Context, api string, fn func(context.Context) (*github.Response, error)) error {
	for attempt := 1; ; attempt++ {
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := fn(actx)
		cancel()
		if err == nil {
			g.log.Debug("github api call", "api", api, "attempt", attempt, "duration", time.Since(start), "http_status", httpStatus(resp))
			return nil
		}
		err = g.scrub(err)
		if ctx.Err() != nil {
			return err
		}
		wait, why, ok := retryDelay(err, attempt, time.Now())
		if !ok {
			return err
		}
		level := slog.LevelDebug
		if why != "server error" {
			// A rate limit delays every status for a while: worth a Warn.
			level = slog.LevelWarn
		}
		g.log.Log(ctx, level, "github api retry", "api", api, "attempt", attempt, "reason", why, "wait", wait, "err", err)
		if werr := cpbackoff.Sleep(ctx, wait); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// retryDelay says whether a request that failed with err on its attempt-th
// try should be retried, after how long, and why. Retried are:
//   - GitHub's primary rate limit (403 or 429 with X-RateLimit-Remaining: 0,
//     which go-github turns into *github.RateLimitError for 403): until
//     X-RateLimit-Reset;
//   - the secondary rate limit (*github.AbuseRateLimitError) and any other
//     429: for Retry-After, or until X-RateLimit-Reset, or a minute;
//   - 500, 502, 503 and 504, up to serverErrorAttempts tries, with backoff.
//     A CreateStatus the server completed before failing may then be
//     posted twice, which is harmless: statuses are append-only.
//
// Rate-limit waits are at least the backoff and at most maxRateLimitWait.
func retryDelay(err error, attempt int, now time.Time) (time.Duration, string, bool) {
	var primary *github.RateLimitError
	var secondary *github.AbuseRateLimitError
	var resp *github.ErrorResponse
	switch {
	case errors.As(err, &primary):
		return rateLimitWait(primary.Rate.Reset.Sub(now), attempt), "rate limit", true
	case errors.As(err, &secondary):
		d := defaultSecondaryWait
		if secondary.RetryAfter != nil {
			d = *secondary.RetryAfter
		}
		return rateLimitWait(d, attempt), "secondary rate limit", true
	case errors.As(err, &resp) && resp.Response != nil:
		switch code := resp.Response.StatusCode; code {
		case http.StatusTooManyRequests:
			return rateLimitWait(headerWait(resp.Response.Header, now), attempt), "rate limit", true
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if attempt < serverErrorAttempts {
				return backoff(attempt), "server error", true
			}
		}
	}
	return 0, "", false
}

// headerWait reads how long a 429 asks to wait: Retry-After (seconds or an
// HTTP date), else X-RateLimit-Reset (Unix seconds), else a minute.
func headerWait(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			return time.Duration(s) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return t.Sub(now)
		}
	}
	if v := h.Get("X-RateLimit-Reset"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(s, 0).Sub(now)
		}
	}
	return defaultSecondaryWait
}

// rateLimitWait adds up to a second of jitter to d, so that agents limited
// together do not retry together, and keeps the result between the backoff
// (a reset already past, by clock skew, must not turn into a busy loop) and
// maxRateLimitWait.
func rateLimitWait(d time.Duration, attempt int) time.Duration {
	d += rand.N(time.Second)
	return min(max(d, backoff(attempt)), maxRateLimitWait)
}

// backoff returns the wait before attempt+1: backoffBase doubled per
// attempt, up to backoffMax, half of it random ("equal jitter"), so retries
// spread out but never come sooner than half the nominal wait.
func backoff(attempt int) time.Duration {
	return cpbackoff.Exponential(attempt, backoffBase, backoffMax)
}

func httpStatus(resp *github.Response) int {
	if resp == nil || resp.Response == nil {
		return 0
	}
	return resp.StatusCode
}

// scrub returns err with the token replaced by "[redacted]" in its text.
// go-github sends the token only in the Authorization header, so its errors
// should never hold it; this makes sure, whatever a proxy or a server echoes.
func (g *GitHub) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := g.redact(err.Error())
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// scrubbedError is an error whose text had the token removed. It unwraps to
// the original, so errors.As still finds go-github's types; print it, not
// what it wraps.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
