// Package runner is the worker inside a stage's ECS task: it takes messages
// from the stage's queue, downloads each named object, runs the algorithm's
// command on it, uploads the result, and records how the run went.
//
// `agent runner` starts it in the algorithm's own container (docs/design.md, "Data
// path"); the task ends when the queue has been idle for a while.
package runner

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Defaults of the Config fields whose zero value means "default".
const (
	DefaultWaitTime    = 20 * time.Second // SQS's longest long poll
	DefaultIdleTimeout = 60 * time.Second
	DefaultRetryDelay  = 30 * time.Second
	DefaultPartSize    = 8 << 20 // bytes per ranged GET and per uploaded part
	DefaultConcurrency = 4       // parts in flight per transfer

	// fallbackVisibility is used when the queue's visibility timeout cannot
	// be read: the SQS default.
	fallbackVisibility = 30 * time.Second
)

// Config is the runner's configuration. The provisioner sets the algorithm
// container's environment (provision/ecs.go, containerEnvironment), which
// ConfigFromEnv reads.
type Config struct {
	QueueURL     string // CLOUDPIPE_QUEUE_URL: the stage's work queue
	InputBucket  string // CLOUDPIPE_INPUT_BUCKET: messages naming another bucket fail; "" accepts any
	OutputBucket string // CLOUDPIPE_OUTPUT_BUCKET: where results go
	// RunCommand is the algorithm's run_command, e.g. "sort -o $output $input".
	// It is split into fields at white space (no shell, no quoting) and each
	// "$input" and "$output" in a field is replaced by the local path, so
	// file names can never become extra arguments or shell code.
	RunCommand string // CLOUDPIPE_RUN_COMMAND
	// InputPath is the algorithm's input_file_path: a directory (ending in
	// "/", or an existing directory), which gets the object under its base
	// name, or the path of the input file itself.
	InputPath string // CLOUDPIPE_INPUT_PATH
	// OutputPath is the algorithm's output_file_path: a directory, in which
	// $output is Result-<ALGORITHM>-<file>, or the path of the output file.
	OutputPath  string // CLOUDPIPE_OUTPUT_PATH
	Algorithm   string // CLOUDPIPE_ALGORITHM: the algorithm's name, part of result keys
	StateBucket string // CLOUDPIPE_STATE_BUCKET: where runs are recorded; "" records none
	Workflow    string // CLOUDPIPE_WORKFLOW
	Stage       int    // CLOUDPIPE_STAGE

	// WaitTime is the long-poll wait of one receive, at most 20s; 0 means
	// DefaultWaitTime. CLOUDPIPE_WAIT_TIME.
	WaitTime time.Duration
	// IdleTimeout ends Run after this long without a message; 0 means
	// DefaultIdleTimeout. CLOUDPIPE_IDLE_TIMEOUT.
	IdleTimeout time.Duration
	// Visibility is how long a received message stays invisible to other
	// runners; the runner extends it every third of it while it works. 0
	// means the queue's own VisibilityTimeout. CLOUDPIPE_VISIBILITY_TIMEOUT.
	Visibility time.Duration
	// RetryDelay is how long a failed message waits before its next
	// delivery, doubled with each delivery (capped at Visibility); 0 means
	// DefaultRetryDelay, and below a second means at once.
	// CLOUDPIPE_RETRY_DELAY.
	RetryDelay time.Duration
	// TempDir holds the zip archives of directory results; "" is the
	// system's temporary directory. CLOUDPIPE_TEMP_DIR.
	TempDir string

	// S3UsePathStyle puts bucket names in the path, as emulators need. Not
	// read from the environment: the caller knows its endpoint.
	S3UsePathStyle bool
	// PartSize and Concurrency tune transfers: ranged GETs and multipart
	// uploads of PartSize bytes, Concurrency at a time. A transfer holds at
	// most (Concurrency+1)*PartSize bytes in memory. 0 means the defaults.
	PartSize    int64
	Concurrency int
}

// ConfigFromEnv reads the Config from the environment through getenv
// (os.Getenv in production) and validates it, reporting every problem at
// once with the variable it concerns.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	c := Config{
		QueueURL:     get("CLOUDPIPE_QUEUE_URL"),
		InputBucket:  get("CLOUDPIPE_INPUT_BUCKET"),
		OutputBucket: get("CLOUDPIPE_OUTPUT_BUCKET"),
		RunCommand:   get("CLOUDPIPE_RUN_COMMAND"),
		InputPath:    get("CLOUDPIPE_INPUT_PATH"),
		OutputPath:   get("CLOUDPIPE_OUTPUT_PATH"),
		Algorithm:    get("CLOUDPIPE_ALGORITHM"),
		StateBucket:  get("CLOUDPIPE_STATE_BUCKET"),
		Workflow:     get("CLOUDPIPE_WORKFLOW"),
		TempDir:      get("CLOUDPIPE_TEMP_DIR"),
	}
	if v := get("CLOUDPIPE_STAGE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("CLOUDPIPE_STAGE=%q is not a stage index", v))
		}
		c.Stage = n
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{
		{"CLOUDPIPE_WAIT_TIME", &c.WaitTime},
		{"CLOUDPIPE_IDLE_TIMEOUT", &c.IdleTimeout},
		{"CLOUDPIPE_VISIBILITY_TIMEOUT", &c.Visibility},
		{"CLOUDPIPE_RETRY_DELAY", &c.RetryDelay},
	} {
		if v := get(d.name); v != "" {
			var err error
			if *d.to, err = parseDuration(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", d.name, v, err))
			}
		}
	}
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseDuration reads a Go duration ("90s", "1m30s") or a whole number of
// seconds, as SQS states timeouts.
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

// Validate reports every missing or malformed setting at once, naming each
// setting by its environment variable.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, value string }{
		{"CLOUDPIPE_QUEUE_URL", c.QueueURL},
		{"CLOUDPIPE_OUTPUT_BUCKET", c.OutputBucket},
		{"CLOUDPIPE_RUN_COMMAND", c.RunCommand},
		{"CLOUDPIPE_INPUT_PATH", c.InputPath},
		{"CLOUDPIPE_OUTPUT_PATH", c.OutputPath},
		{"CLOUDPIPE_ALGORITHM", c.Algorithm},
	} {
		if strings.TrimSpace(f.value) == "" {
			errs = append(errs, fmt.Errorf("%s is not set", f.name))
		}
	}
	if c.StateBucket != "" && c.Workflow == "" {
		errs = append(errs, errors.New("CLOUDPIPE_WORKFLOW is not set (run records are kept per workflow)"))
	}
	if strings.ContainsAny(c.Algorithm, "/\x00") {
		errs = append(errs, fmt.Errorf("CLOUDPIPE_ALGORITHM=%q: a name cannot hold / (it is part of result keys)", c.Algorithm))
	}
	if strings.ContainsAny(c.Workflow, "/\x00") {
		errs = append(errs, fmt.Errorf("CLOUDPIPE_WORKFLOW=%q: a name cannot hold /", c.Workflow))
	}
	if c.WaitTime > 20*time.Second {
		errs = append(errs, fmt.Errorf("CLOUDPIPE_WAIT_TIME=%v: SQS waits at most 20s", c.WaitTime))
	}
	if c.Visibility > 12*time.Hour {
		errs = append(errs, fmt.Errorf("CLOUDPIPE_VISIBILITY_TIMEOUT=%v: SQS allows at most 12h", c.Visibility))
	}
	if c.Visibility > 0 && c.Visibility < time.Second {
		errs = append(errs, fmt.Errorf("CLOUDPIPE_VISIBILITY_TIMEOUT=%v: SQS counts whole seconds, at least 1", c.Visibility))
	}
	if c.PartSize != 0 && c.PartSize < 5<<20 {
		errs = append(errs, fmt.Errorf("part size %d: S3 parts are at least 5 MiB", c.PartSize))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero values that mean "default" and makes the
// local paths absolute, so that a substituted path never starts with "-"
// and cannot be read as an option.
func (c Config) withDefaults() (Config, error) {
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	for _, p := range []*string{&c.InputPath, &c.OutputPath} {
		dir := strings.HasSuffix(*p, "/")
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, fmt.Errorf("resolve %s: %w", *p, err)
		}
		if dir && !strings.HasSuffix(abs, "/") {
			abs += "/" // keep saying "directory"
		}
		*p = abs
	}
	return c, nil
}
