package lambda

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	awslambda "github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// Start serves the stage function and does not return. It loads the AWS
// configuration from the function's environment (region and the execution
// role's credentials, or AWS_ENDPOINT_URL for an emulator), reads Config with
// ConfigFromEnv and hands Handle to the Lambda runtime. Logs are JSON on
// stderr, which Lambda sends to CloudWatch; CLOUDPIPE_LOG_LEVEL or Lambda's
// AWS_LAMBDA_LOG_LEVEL sets the level (default info). A configuration error
// is logged and ends the process, which Lambda reports as an init failure.
func Start() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(os.Getenv)}))
	// Start is the Lambda entry point: the one place besides main where a
	// root context is made.
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		log.Error("aws configuration not loaded", "err", err)
		os.Exit(1)
	}
	c, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("stage function misconfigured", "err", err)
		os.Exit(1)
	}
	h := New(cfg, c, WithLogger(log))
	awslambda.Start(func(ctx context.Context, ev events.S3Event) error {
		err := h.Handle(ctx, ev)
		if err != nil {
			// The runtime hands the error to Lambda, which retries the event
			// but logs nothing: this is where it is finally handled.
			log.Error("event failed, lambda retries it", "err", err)
		}
		return err
	})
}

// logLevel reads the log level from CLOUDPIPE_LOG_LEVEL, then Lambda's
// AWS_LAMBDA_LOG_LEVEL (DEBUG, INFO, ...); unset or unknown means info.
func logLevel(getenv func(string) string) slog.Level {
	for _, name := range []string{contract.EnvLogLevel, "AWS_LAMBDA_LOG_LEVEL"} {
		var l slog.Level
		if v := getenv(name); v != "" && l.UnmarshalText([]byte(v)) == nil {
			return l
		}
	}
	return slog.LevelInfo
}
