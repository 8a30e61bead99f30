package awsrules_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// clock is a settable Options.Now, so tests move past SQS's 60 s and 12 h
// instead of waiting them out.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newProxy starts a proxy in front of the test binary's kumo and returns it
// with an SDK config that goes through it. The config never retries, so
// each call shows the answer it got (the product's retryer waits out
// QueueDeletedRecently, for one).
func newProxy(t *testing.T, o awsrules.Options) (*awsrules.Proxy, aws.Config) {
	t.Helper()
	p, err := awsrules.New(testenv.KumoURL(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, direct(p.URL())
}

// direct is a config for the emulator (or proxy) at url that never retries.
func direct(url string) aws.Config {
	cfg := testenv.KumoConfig(url)
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	return cfg
}

// wantRefused fails t unless err is the AWS error code with the HTTP
// status, and, when message is not "", that message.
func wantRefused(t *testing.T, err error, status int, code, message string) {
	t.Helper()
	var api smithy.APIError
	if !errors.As(err, &api) {
		t.Fatalf("err = %v, want %s", err, code)
	}
	if api.ErrorCode() != code {
		t.Errorf("code = %q (%v), want %q", api.ErrorCode(), err, code)
	}
	if message != "" && api.ErrorMessage() != message {
		t.Errorf("message = %q, want %q", api.ErrorMessage(), message)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Errorf("err = %v, want HTTP status %d", err, status)
	}
}

func TestNewRejectsATargetThatIsNotABaseURL(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:4566", "http://"} {
		if p, err := awsrules.New(target, awsrules.Options{}); err == nil {
			p.Close()
			t.Errorf("New(%q) succeeded, want an error", target)
		}
	}
}

// TestRegionNotEnabledRejectsTheCredentials: a region the account has not
// enabled answers as if the credentials were unknown, in each protocol.
func TestRegionNotEnabledRejectsTheCredentials(t *testing.T) {
	_, cfg := newProxy(t, awsrules.Options{DisabledRegions: []string{"af-south-1"}})
	optIn := cfg.Copy()
	optIn.Region = "af-south-1"
	_, err := sts.NewFromConfig(optIn).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	wantRefused(t, err, http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
	_, err = sqs.NewFromConfig(optIn).ListQueues(t.Context(), &sqs.ListQueuesInput{})
	wantRefused(t, err, http.StatusBadRequest, "UnrecognizedClientException", "")
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); err != nil {
		t.Errorf("an enabled region: %v", err)
	}
}
