package lambda

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

// startTasks starts tasks for the queued jobs: one per job, at most
// stagetask.MaxRunTaskCount per RunTask call, and never more than MaxTasks of the
// stage running at once. Every task's runner drains the queue, so fewer
// tasks than jobs is fine; what matters is that some task will run.
//
// So a failure is reported only when no task of the stage is running or was
// started: then a RunTask refusal that retrying cannot fix is logged and
// the jobs stay queued, for the agent's stranded-files check to start a
// task again or dead-letter them, and anything else is returned for Lambda
// to retry the event. When some task runs, a failure is
// only logged: a retry of the event would queue every message again and run
// the algorithm twice on each before the result's If-None-Match stopped it.
func (h *Handler) startTasks(ctx context.Context, queued []job, margin time.Duration) (started int, err error) {
	if h.cfg.OnBatch() {
		return h.startJobs(ctx, queued, margin)
	}
	running, err := h.running(ctx)
	n, running := h.budget(len(queued), running, err)
	if n <= 0 {
		return 0, nil
	}
	var failure error
	for from := 0; from < n; from += stagetask.MaxRunTaskCount {
		chunk := queued[from:min(from+stagetask.MaxRunTaskCount, n)]
		if left := remaining(ctx); left < margin {
			failure = fmt.Errorf("start %d tasks with %v left: %w", n-from, left.Round(1e6), ErrDeadline)
			break
		}
		out, err := h.ecs.RunTask(ctx, h.runTaskInput(chunk))
		if err != nil {
			failure = fmt.Errorf("run task %s: %w", h.cfg.TaskDefinition, err)
			break // the next call would fail the same way
		}
		started += len(out.Tasks)
		if len(out.Failures) > 0 {
			failure = fmt.Errorf("run task %s: %d of %d not started: %s", h.cfg.TaskDefinition,
				len(out.Failures), len(chunk), failureReasons(out.Failures))
		}
		h.log.Debug("tasks started", "count", len(out.Tasks), "failures", len(out.Failures))
	}
	return h.settle(queued, running, started, n, failure)
}

// budget is how many tasks (or jobs) to start for queued files with
// running of the stage's counted, or the count failed with countErr, and
// the running count to go on with. Without a count the cap cannot be
// kept: every event would start up to MaxTasks more. One keeps the queue
// moving (each runner drains it) without letting a burst of uploads exceed
// the cap by more than one per event.
func (h *Handler) budget(queued, running int, countErr error) (n, counted int) {
	limit := h.cfg.MaxTasks
	if countErr != nil {
		h.log.Warn("running tasks not counted, starting at most one", "err", countErr)
		running, limit = 0, 1
	}
	n = stagetask.ToStart(queued, running, limit)
	if n == 0 {
		h.log.Debug("stage at its task cap", "running", running, "max_tasks", h.cfg.MaxTasks)
	}
	return n, running
}

// settle is the outcome of starting n tasks (or jobs) for queued with
// running already running: started and failure as they came, unless some
// run, when a failure is only logged, or the failure is permanent, when the
// files stay queued for the agent (see startTasks).
func (h *Handler) settle(queued []job, running, started, n int, failure error) (int, error) {
	switch {
	case failure == nil:
		return started, nil
	case running+started > 0:
		h.log.Warn("fewer tasks started than wanted", "running", running, "started", started, "wanted", n, "err", failure)
		return started, nil
	case isPermanent(failure):
		// The files stay queued, in one place: a dead-letter copy here
		// would leave the original in the work queue too. The agent's
		// run-status tick finds files waiting with no task, starts one
		// again and, after its bound of failed starts, moves them to the
		// dead-letter queue with the reason (sync/strand.go).
		h.log.Error("tasks not started: the files stay queued for the agent to retry and, failing that, dead-letter",
			"queued", len(queued), "err", failure)
		return started, nil
	default:
		return started, failure
	}
}

// runTaskInput starts one task per job of chunk. The clientToken makes a
// duplicate S3 event start no second task.
func (h *Handler) runTaskInput(chunk []job) *ecs.RunTaskInput {
	return stagetask.RunTaskInput(h.cfg.FunctionEnv, len(chunk), batchToken(chunk))
}

// running counts the stage's tasks whose desired status is RUNNING (pending
// ones included), stopping at MaxTasks. ListTasks is eventually consistent,
// so tasks started a moment ago may be missing: the cap is a soft one.
func (h *Handler) running(ctx context.Context) (int, error) {
	if h.noListTasks.Load() {
		return 0, nil
	}
	family := stagetask.Family(h.cfg.TaskDefinition)
	n := 0
	var next *string
	for {
		out, err := h.ecs.ListTasks(ctx, stagetask.ListTasksInput(h.cfg.Cluster, h.cfg.TaskDefinition, ecstypes.DesiredStatusRunning, next))
		if isUnknownOperation(err) {
			if h.noListTasks.CompareAndSwap(false, true) {
				h.log.Debug("ListTasks not implemented, counting no running tasks")
			}
			return 0, nil
		}
		if err != nil {
			return n, fmt.Errorf("list tasks %s: %w", family, err)
		}
		n += len(out.TaskArns)
		if n >= h.cfg.MaxTasks || out.NextToken == nil {
			return n, nil
		}
		next = out.NextToken
	}
}

// failureReasons joins the distinct reasons of RunTask failures.
func failureReasons(fs []ecstypes.Failure) string {
	var reasons []string
	for _, f := range fs {
		r := aws.ToString(f.Reason)
		if d := aws.ToString(f.Detail); d != "" {
			r += " (" + d + ")"
		}
		if !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	return strings.Join(reasons, "; ")
}

// isUnknownOperation reports an API that the endpoint does not implement:
// "UnknownOperationException" is what AWS JSON services (and kumo, which
// lacks ListTasks) answer, the others are the same for query protocols.
func isUnknownOperation(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "UnknownOperationException", "UnknownOperation", "InvalidAction", "NotImplemented":
		return true
	}
	return false
}

// isPermanent reports an AWS error that the same request cannot overcome by
// being repeated: a client fault (access denied, an invalid parameter, a
// missing cluster or task definition) other than throttling. Throttling,
// server faults, network errors and timeouts are not permanent.
func isPermanent(err error) bool {
	if errors.Is(err, ErrDeadline) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	if _, throttle := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; throttle {
		return false
	}
	switch ae.ErrorCode() {
	case "AccessDeniedException", "AccessDenied", "UnauthorizedOperation",
		"ClientException", "InvalidParameterException", "ClusterNotFoundException",
		"PlatformUnknownException", "PlatformTaskDefinitionIncompatibilityException",
		"UnsupportedFeatureException", "BlockedException":
		return true
	}
	return ae.ErrorFault() == smithy.FaultClient
}
