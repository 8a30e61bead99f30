package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/lmittmann/tint"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/runner"
)

// The two roles a child of the demo plays. Each is what the agent's binary
// does in AWS: the stage function's handler (started by the Lambda runtime
// there, by the demo here) and the runner in a task's algorithm container.
// Their settings come from the environment the demo gives them, as the
// function's and the container's environment give them in AWS.

// lambdaMain serves a stage function through the Lambda Runtime API at
// AWS_LAMBDA_RUNTIME_API (kumo's, for the demo). It does not return.
func lambdaMain() {
	lambda.Start()
}

// runnerMain drains a stage's queue like the runner in a task, and returns
// the process's exit code: 0 once the queue stayed idle, 1 on an error.
func runnerMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := newLogger(os.Stderr, os.Getenv(contract.EnvLogLevel))
	cfg, err := runner.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("runner misconfigured", "err", err)
		return exitFailure
	}
	// The endpoint is an emulator, which needs bucket names in the path.
	cfg.S3UsePathStyle = true
	// The SDK warns on stderr about every download whose answer carries no
	// checksum, which kumo's never do: keep that at debug level.
	sdkLog := logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		log.Debug("aws sdk", "classification", c, "msg", fmt.Sprintf(format, v...))
	})
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(sdkLog))
	if err != nil {
		log.Error("aws configuration not loaded", "err", err)
		return exitFailure
	}
	err = runner.Run(ctx, awsCfg, cfg, log)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		// Stopped (StopTask or the demo ending): the message in progress
		// was released for another task.
		return exitOK
	default:
		log.Error("runner failed", "err", err)
		return exitFailure
	}
}

// newLogger returns a human-readable logger on w at the named level (warn
// when empty or unknown).
func newLogger(w io.Writer, level string) *slog.Logger {
	lvl := slog.LevelWarn
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			lvl = slog.LevelWarn
		}
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, NoColor: true}))
}
