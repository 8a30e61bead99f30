package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/cloudpipe/cloudpipe/runner"
)

var runnerCommand = &command{
	name:     "runner",
	synopsis: "[install DIR]",
	summary:  "work a stage's queue inside its ECS task",
	help: `Run as the worker in a stage's ECS task: receive the stage's queue
messages one at a time, download each named object into the algorithm's
input path, run the algorithm's command on it, upload the result to the
output bucket as <prefix>/Result-<ALGORITHM>-<file> (a directory result is
zipped), delete the message and record the run in the state bucket. A
failed run leaves its message for a later attempt and, after the queue's
maxReceiveCount, the dead-letter queue; it waits CLOUDPIPE_RETRY_DELAY
(default 30s, doubled per attempt), and the runner stays until it is back.
The runner exits 0 once the queue has been idle for CLOUDPIPE_IDLE_TIMEOUT
(default 60s) with no such retry pending, or on SIGTERM.

It is configured by the environment the task definition sets:
CLOUDPIPE_QUEUE_URL, CLOUDPIPE_INPUT_BUCKET, CLOUDPIPE_OUTPUT_BUCKET,
CLOUDPIPE_RUN_COMMAND, CLOUDPIPE_INPUT_PATH, CLOUDPIPE_OUTPUT_PATH,
CLOUDPIPE_ALGORITHM, CLOUDPIPE_STATE_BUCKET, CLOUDPIPE_STATE_REGION,
CLOUDPIPE_WORKFLOW and CLOUDPIPE_STAGE; optionally CLOUDPIPE_WAIT_TIME, CLOUDPIPE_IDLE_TIMEOUT,
CLOUDPIPE_VISIBILITY_TIMEOUT, CLOUDPIPE_RETRY_DELAY and CLOUDPIPE_TEMP_DIR.
The keys of a workflow's task_credentials_secret arrive as
CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID and CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY:
the runner signs its own calls as the task role and gives them to the
algorithm's process alone, as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
The algorithm's process also gets the original cloud_pipe runtime's NAME
(the algorithm's name), output_s3_name (the output bucket), sqs (the queue's
URL), AWS_DEFAULT_REGION (the task's region), AWS_DEFAULT_OUTPUT (json) and
LOG_LVL (WARNING), each unless the environment already holds it.

'agent runner install DIR' copies this executable to DIR/agent (mode 0755,
atomically): the task's init container runs it to put the runner into the
volume that the algorithm's container mounts.

Exit status: 0 idle or stopped, 1 the queue could not be read, 2 a missing
or malformed setting.`,
	flags: []string{"log-format", "log-level"},
	run:   runRunner,
}

func runRunner(ctx context.Context, cfg Config, args []string, out streams) error {
	if len(args) > 0 {
		if args[0] != "install" {
			return usagef("unknown argument %q", args[0])
		}
		if len(args) != 2 {
			return usagef("install takes one DIR")
		}
		return installRunner(args[1], out)
	}
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	c, err := runner.ConfigFromEnv(os.Getenv)
	if err != nil {
		return usageError{err}
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	// An emulator behind AWS_ENDPOINT_URL needs bucket names in the path,
	// as in aws.go.
	c.S3UsePathStyle = os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	err = runner.Run(ctx, awsCfg, c, log)
	if errors.Is(err, context.Canceled) {
		// SIGTERM (ECS stopping the task): the message in progress was
		// released for another task, so this is a clean stop.
		return nil
	}
	return err
}

// installRunner copies the running executable to dir/agent with mode 0755.
// It writes a temporary file in dir and renames it, so a reader of the
// volume never sees half a binary, and a second install replaces the first.
func installRunner(dir string, out streams) (err error) {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this executable: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("find this executable: %w", err)
	}
	src, err := os.Open(exe)
	if err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".agent-*")
	if err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	dst := filepath.Join(dir, "agent")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install runner: %w", err)
	}
	fmt.Fprintf(out.stdout, "installed %s\n", dst)
	return nil
}

// startedAsLambda reports whether the process was started by the Lambda
// runtime to serve a stage function (docs/design.md, "One binary, three roles"):
// the runtime API is set and the executable is the function's bootstrap,
// or CLOUDPIPE_LAMBDA=1 asks for it under another name (a local process
// playing the function against an emulator's runtime API).
func startedAsLambda(getenv func(string) string, arg0 string) bool {
	return getenv("AWS_LAMBDA_RUNTIME_API") != "" &&
		(filepath.Base(arg0) == "bootstrap" || getenv("CLOUDPIPE_LAMBDA") == "1")
}
