// Package contract holds the wire formats between cloudpipe's processes, each
// defined once: the environment the agent gives the stage function and the
// runner, the queue message the stage function sends the runner, and the run
// records the runner writes for the agent and the demo. The writer and the
// reader of each use the same definition, so neither side can change a name
// or a field alone.
package contract

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Environment variables the agent sets for the processes it deploys.
// The stage function and the runner share the first three.
const (
	EnvQueueURL = "CLOUDPIPE_QUEUE_URL" // the stage's work queue
	EnvWorkflow = "CLOUDPIPE_WORKFLOW"
	EnvStage    = "CLOUDPIPE_STAGE"

	// The stage function's (FunctionEnv).
	EnvDLQURL         = "CLOUDPIPE_DLQ_URL"
	EnvCluster        = "CLOUDPIPE_CLUSTER"
	EnvTaskDefinition = "CLOUDPIPE_TASK_DEFINITION"
	EnvSubnets        = "CLOUDPIPE_SUBNETS"
	EnvSecurityGroups = "CLOUDPIPE_SECURITY_GROUPS"
	EnvAssignPublicIP = "CLOUDPIPE_ASSIGN_PUBLIC_IP"
	EnvMaxTasks       = "CLOUDPIPE_MAX_TASKS"
	EnvContainer      = "CLOUDPIPE_CONTAINER"
	// A stage placed on AWS Batch submits jobs to its queue and definition
	// instead of starting tasks (FunctionEnv.OnBatch).
	EnvJobQueue      = "CLOUDPIPE_JOB_QUEUE"
	EnvJobDefinition = "CLOUDPIPE_JOB_DEFINITION"

	// The runner's (RunnerEnv).
	EnvInputBucket       = "CLOUDPIPE_INPUT_BUCKET"
	EnvOutputBucket      = "CLOUDPIPE_OUTPUT_BUCKET"
	EnvRunCommand        = "CLOUDPIPE_RUN_COMMAND"
	EnvInputPath         = "CLOUDPIPE_INPUT_PATH"
	EnvOutputPath        = "CLOUDPIPE_OUTPUT_PATH"
	EnvAlgorithm         = "CLOUDPIPE_ALGORITHM"
	EnvStateBucket       = "CLOUDPIPE_STATE_BUCKET"
	EnvStateRegion       = "CLOUDPIPE_STATE_REGION"
	EnvWaitTime          = "CLOUDPIPE_WAIT_TIME"
	EnvIdleTimeout       = "CLOUDPIPE_IDLE_TIMEOUT"
	EnvVisibilityTimeout = "CLOUDPIPE_VISIBILITY_TIMEOUT"
	EnvRetryDelay        = "CLOUDPIPE_RETRY_DELAY"
	EnvTempDir           = "CLOUDPIPE_TEMP_DIR"

	// EnvLogLevel is the slog level (debug, info, ...) of the stage function
	// and the runner; the demo sets it for the processes it starts.
	EnvLogLevel = "CLOUDPIPE_LOG_LEVEL"

	// The keys of a workflow's task_credentials_secret reach the container
	// under these names, not as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY:
	// the runner in the same container must go on signing as the stage's
	// task role (the AWS SDKs prefer keys in the environment to the task
	// role), and it hands them to the algorithm's process alone, under the
	// standard names.
	EnvAlgorithmAccessKeyID     = "CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID"
	EnvAlgorithmSecretAccessKey = "CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY"
)

// AlgorithmCredentials pairs each variable the task-credentials secret is
// mapped to with the standard name the algorithm's process sees it under.
var AlgorithmCredentials = map[string]string{
	EnvAlgorithmAccessKeyID:     "AWS_ACCESS_KEY_ID",
	EnvAlgorithmSecretAccessKey: "AWS_SECRET_ACCESS_KEY",
}

// envReader reads variables through getenv, collecting every problem so
// that a misconfigured process reports them all at once, each naming its
// variable.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (r *envReader) fail(err error) { r.errs = append(r.errs, err) }

func (r *envReader) err() error { return errors.Join(r.errs...) }

func (r *envReader) optional(name string) string { return strings.TrimSpace(r.getenv(name)) }

func (r *envReader) required(name string) string {
	v := r.optional(name)
	if v == "" {
		r.fail(fmt.Errorf("%s is not set", name))
	}
	return v
}

// list reads a comma list, dropping blanks; unset is nil.
func (r *envReader) list(name string) []string {
	var out []string
	for _, f := range strings.Split(r.getenv(name), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// boolean reads strconv.ParseBool's forms; unset is false.
func (r *envReader) boolean(name string) bool {
	v := r.optional(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(fmt.Errorf("%s=%q is not a boolean", name, v))
	}
	return b
}

// positive reads an integer of at least 1; unset is def.
func (r *envReader) positive(name string, def int) int {
	v := r.optional(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		r.fail(fmt.Errorf("%s=%q is not a positive integer", name, v))
	}
	return n
}

// stage reads EnvStage; unset is stage 0.
func (r *envReader) stage() int {
	v := r.optional(EnvStage)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail(fmt.Errorf("%s=%q is not a stage index", EnvStage, v))
	}
	return n
}

// duration reads a Go duration ("90s", "1m30s") or a whole number of
// seconds, as SQS states timeouts; unset is 0.
func (r *envReader) duration(name string) time.Duration {
	v := r.optional(name)
	if v == "" {
		return 0
	}
	d, err := parseDuration(v)
	if err != nil {
		r.fail(fmt.Errorf("%s=%q: %w", name, v, err))
	}
	return d
}

func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, errors.New("negative duration")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (like 90s) or a number of seconds")
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}
