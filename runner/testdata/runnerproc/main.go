// Command runnerproc runs runner.Run from the environment, as `agent runner`
// does, without the rest of the agent: TestRunLargeFileMemory builds it to
// measure the runner's memory as a process of its own (the test binary
// holds the in-process AWS emulator, whose memory would swamp the figure).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/cloudpipe/cloudpipe/runner"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "runnerproc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	c, err := runner.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c.S3UsePathStyle = true
	return runner.Run(ctx, cfg, c, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}
