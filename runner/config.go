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
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
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

// Config is the runner's configuration: the environment the provisioner
// sets on the algorithm container (contract.RunnerEnv), whose zero durations
// mean the defaults above, and the settings only the caller knows.
type Config struct {
	contract.RunnerEnv

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
	env, err := contract.ReadRunnerEnv(getenv)
	c := Config{RunnerEnv: env}
	if err := errors.Join(err, c.Validate()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports every missing or malformed setting at once, naming each
// setting by its environment variable.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, value string }{
		{contract.EnvQueueURL, c.QueueURL},
		{contract.EnvOutputBucket, c.OutputBucket},
		{contract.EnvRunCommand, c.RunCommand},
		{contract.EnvInputPath, c.InputPath},
		{contract.EnvOutputPath, c.OutputPath},
		{contract.EnvAlgorithm, c.Algorithm},
	} {
		if strings.TrimSpace(f.value) == "" {
			errs = append(errs, fmt.Errorf("%s is not set", f.name))
		}
	}
	if c.StateBucket != "" && c.Workflow == "" {
		errs = append(errs, errors.New(contract.EnvWorkflow+" is not set (run records are kept per workflow)"))
	}
	if strings.ContainsAny(c.Algorithm, "/\x00") {
		errs = append(errs, fmt.Errorf("%s=%q: a name cannot hold / (it is part of result keys)", contract.EnvAlgorithm, c.Algorithm))
	}
	if strings.ContainsAny(c.Workflow, "/\x00") {
		errs = append(errs, fmt.Errorf("%s=%q: a name cannot hold /", contract.EnvWorkflow, c.Workflow))
	}
	if c.WaitTime > 20*time.Second {
		errs = append(errs, fmt.Errorf("%s=%v: SQS waits at most 20s", contract.EnvWaitTime, c.WaitTime))
	}
	if c.Visibility > 12*time.Hour {
		errs = append(errs, fmt.Errorf("%s=%v: SQS allows at most 12h", contract.EnvVisibilityTimeout, c.Visibility))
	}
	if c.Visibility > 0 && c.Visibility < time.Second {
		errs = append(errs, fmt.Errorf("%s=%v: SQS counts whole seconds, at least 1", contract.EnvVisibilityTimeout, c.Visibility))
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
