package contract

import (
	"maps"
	"strconv"
	"time"
)

// RunnerEnv is the runner's environment: what the agent's provisioner sets
// on the algorithm container of a stage's task definition (Env) and the
// runner reads at start (ReadRunnerEnv).
type RunnerEnv struct {
	QueueURL     string // EnvQueueURL: the stage's work queue
	InputBucket  string // EnvInputBucket: messages naming another bucket fail; "" accepts any
	OutputBucket string // EnvOutputBucket: where results go
	// RunCommand is the algorithm's run_command, e.g. "sort -o $output $input".
	// It is split into fields at white space (no shell, no quoting) and each
	// "$input" and "$output" in a field is replaced by the local path, so
	// file names can never become extra arguments or shell code.
	RunCommand string // EnvRunCommand
	// InputPath is the algorithm's input_file_path: a directory (ending in
	// "/", or an existing directory), which gets the object under its base
	// name, or the path of the input file itself.
	InputPath string // EnvInputPath
	// OutputPath is the algorithm's output_file_path: a directory, in which
	// $output is Result-<ALGORITHM>-<file>, or the path of the output file.
	OutputPath  string // EnvOutputPath
	Algorithm   string // EnvAlgorithm: the algorithm's name, part of result keys
	StateBucket string // EnvStateBucket: where runs are recorded; "" records none
	// StateRegion is the state bucket's region: the agent's, which a stage
	// of a workflow in another region does not run in (S3 answers a
	// request sent to another region's endpoint with a redirect). ""
	// means the task's own region.
	StateRegion string // EnvStateRegion
	Workflow    string // EnvWorkflow
	Stage       int    // EnvStage

	// The tuning settings below are 0 or "" when unset, which the runner
	// reads as its defaults (runner/config.go). The provisioner sets none
	// of them; the demo sets them to run quickly.

	// WaitTime is the long-poll wait of one receive, at most 20s.
	WaitTime time.Duration // EnvWaitTime
	// IdleTimeout ends the runner after this long without a message.
	IdleTimeout time.Duration // EnvIdleTimeout
	// Visibility is how long a received message stays invisible to other
	// runners; unset means the queue's own VisibilityTimeout.
	Visibility time.Duration // EnvVisibilityTimeout
	// RetryDelay is how long a failed message waits before its next
	// delivery, doubled with each delivery (capped at Visibility); below a
	// second means at once.
	RetryDelay time.Duration // EnvRetryDelay
	// TempDir holds the zip archives of directory results; "" is the
	// system's temporary directory.
	TempDir string // EnvTempDir
}

// Env returns e as environment variables. The stage's settings are always
// written, empty ones included; the tuning settings only when set, so that
// a task definition the provisioner registered before they existed still
// equals what it would register now.
func (e RunnerEnv) Env() map[string]string {
	env := map[string]string{
		EnvQueueURL:     e.QueueURL,
		EnvInputBucket:  e.InputBucket,
		EnvOutputBucket: e.OutputBucket,
		EnvRunCommand:   e.RunCommand,
		EnvInputPath:    e.InputPath,
		EnvOutputPath:   e.OutputPath,
		EnvAlgorithm:    e.Algorithm,
		EnvStateBucket:  e.StateBucket,
		EnvStateRegion:  e.StateRegion,
		EnvWorkflow:     e.Workflow,
		EnvStage:        strconv.Itoa(e.Stage),
	}
	maps.Copy(env, e.TuningEnv())
	return env
}

// TuningEnv returns the tuning settings that are set, as environment
// variables: what a caller adds to a task definition's environment to run
// its runners with other timings.
func (e RunnerEnv) TuningEnv() map[string]string {
	env := map[string]string{}
	for name, d := range map[string]time.Duration{
		EnvWaitTime:          e.WaitTime,
		EnvIdleTimeout:       e.IdleTimeout,
		EnvVisibilityTimeout: e.Visibility,
		EnvRetryDelay:        e.RetryDelay,
	} {
		if d != 0 {
			env[name] = d.String()
		}
	}
	if e.TempDir != "" {
		env[EnvTempDir] = e.TempDir
	}
	return env
}

// ReadRunnerEnv reads a RunnerEnv through getenv (os.Getenv in production).
// It reports every malformed variable at once, each error naming its
// variable, and returns what it could read even then, so that the runner
// can add its own validation to the same report. It does not require any
// variable: the runner's validation decides that.
func ReadRunnerEnv(getenv func(string) string) (RunnerEnv, error) {
	r := envReader{getenv: getenv}
	e := RunnerEnv{
		QueueURL:     r.optional(EnvQueueURL),
		InputBucket:  r.optional(EnvInputBucket),
		OutputBucket: r.optional(EnvOutputBucket),
		RunCommand:   r.optional(EnvRunCommand),
		InputPath:    r.optional(EnvInputPath),
		OutputPath:   r.optional(EnvOutputPath),
		Algorithm:    r.optional(EnvAlgorithm),
		StateBucket:  r.optional(EnvStateBucket),
		StateRegion:  r.optional(EnvStateRegion),
		Workflow:     r.optional(EnvWorkflow),
		TempDir:      r.optional(EnvTempDir),
		Stage:        r.stage(),
		WaitTime:     r.duration(EnvWaitTime),
		IdleTimeout:  r.duration(EnvIdleTimeout),
		Visibility:   r.duration(EnvVisibilityTimeout),
		RetryDelay:   r.duration(EnvRetryDelay),
	}
	return e, r.err()
}
