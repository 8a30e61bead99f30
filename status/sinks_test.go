package status_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/status"
)

func TestDiscardWarnsOnce(t *testing.T) {
	var logs syncBuffer
	d := &status.Discard{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			posted, err := d.Post(t.Context(), status.Status{Commit: "abc", Context: status.RunContext("w"), State: status.Success, Description: strings.Repeat("x", i)})
			if posted || err != nil {
				t.Errorf("Post = %v, %v; want false, nil", posted, err)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "statuses skipped") {
		t.Errorf("logs:\n%s\nwant one warning", logs.String())
	}

	var zero status.Discard // no logger: nothing to say, nothing to break
	if posted, err := zero.Post(t.Context(), status.Status{}); posted || err != nil {
		t.Errorf("zero Discard Post = %v, %v", posted, err)
	}
}

func TestConsole(t *testing.T) {
	var out bytes.Buffer
	c := &status.Console{W: &out}
	deployed := status.Status{Commit: "abc", Context: status.WorkflowContext("foo"), State: status.Success, Description: status.DeployedDescription("in", "out")}
	steps := []struct {
		s      status.Status
		posted bool
	}{
		{deployed, true},
		{deployed, false},
		{status.Status{Commit: "abc", Context: status.RunContext("foo"), State: status.Pending, Description: "0 done,\n0 failed"}, true},
		{status.Status{Commit: "def", Context: status.WorkflowContext("foo"), State: status.Success, Description: status.DeployedDescription("in", "out")}, true},
		{status.Status{Commit: "abc", Context: status.WorkflowContext("foo"), State: status.Failure, Description: "boom"}, true},
	}
	for i, step := range steps {
		if posted, err := c.Post(t.Context(), step.s); err != nil || posted != step.posted {
			t.Errorf("step %d: Post = %v, %v; want %v, nil", i, posted, err, step.posted)
		}
	}
	want := `status cloudpipe/foo success: upload to s3://in · results in s3://out
status cloudpipe/run/foo pending: 0 done, 0 failed
status cloudpipe/foo success: upload to s3://in · results in s3://out
status cloudpipe/foo failure: boom
`
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
	if _, err := c.Post(t.Context(), status.Status{Commit: "abc", State: status.Success}); !errors.Is(err, status.ErrInvalid) {
		t.Errorf("Post without a context: %v, want ErrInvalid", err)
	}
}
