// Command demo runs the whole of cloudpipe on one machine, with no AWS
// account: an in-process AWS emulator (kumo), a local Git repository holding
// the example workflows, the agent's own reconcile pass deploying them, the
// stage functions' handlers and the runners as local processes, and one
// sample file carried through every pipeline.
//
// Usage:
//
//	go run ./cmd/demo [--once] [--workflow NAME] [--upload FILE] [--download DIR] [--algorithm-image IMAGE]
//
// Without --once the demo stays up, deploys what is committed to its
// repository every few seconds, and processes what is uploaded to the
// emulator at http://127.0.0.1:4566 until Ctrl-C.
//
// It lives apart from cmd/agent so the emulator never ships in the agent's
// image. The same binary plays the stage functions and the runners: started
// with CLOUDPIPE_DEMO_ROLE=lambda or =runner it serves that role instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a pipeline failed, or a result did not arrive in time
	exitUsage   = 2
)

// roleEnv selects the role of a child process; see roles.go.
const roleEnv = "CLOUDPIPE_DEMO_ROLE"

// defaultPort is the only port kumo delivers S3 event notifications to.
const defaultPort = 4566

// options are the demo's settings: the flags, and what tests set directly.
type options struct {
	port     int
	repo     string // config repository whose workflows/ and algorithms/ are used; "" finds the checkout's
	workflow string // only this workflow gets the sample; "" means all
	upload   string // file to upload; "" means a generated sample
	download string // directory the results are written to; "" writes none
	once     bool
	timeout  time.Duration
	logLevel slog.Level
	// algorithmImage, if set, replaces the image of every algorithm: one
	// under registry.invalid/ shows tasks that cannot start, and their
	// files going to the dead-letter queue.
	algorithmImage string
	// runStatusEvery is the agent loop's run-status tick, which also
	// starts tasks again for files left waiting; default
	// defaultRunStatusEvery.
	runStatusEvery time.Duration
	// iam authorizes every request as IAM would (internal/awsrules): the
	// agent as its role, each stage function and task as theirs.
	iam bool
	// iamReport, if set, receives what IAM authorized when the demo ends
	// (tests read the figures from it).
	iamReport func(awsrules.Report)
	// beforeUpload, if set, runs after the first pass, before the sample
	// is uploaded, with the operator's AWS configuration: a test changes
	// there what it needs changed behind the agent's back.
	beforeUpload func(ctx context.Context, operator aws.Config) error

	// executable is the binary started as stage-function handlers and as
	// runners, and zipped as the functions' code; default os.Executable().
	executable string
	// stateBucket is the agent's state bucket; default the agent's own
	// default name for kumo's account and region.
	stateBucket string
	// kumoURL is an emulator to use instead of starting one. kumo keeps its
	// state in package variables, and a second server in one process races
	// with the first one's goroutines: in-process tests share theirs.
	kumoURL string
	// codeFile is zipped as the stage functions' code; default executable.
	// kumo never runs that code (the demo starts the handlers itself), so
	// tests under the race detector give a small file rather than spend
	// minutes moving the demo's 100 MB through CreateFunction.
	codeFile string
	// stderr receives the logs.
	stderr io.Writer
}

func main() {
	// A child started by the demo plays a stage function or a runner.
	switch role := os.Getenv(roleEnv); role {
	case "":
	case "lambda":
		lambdaMain() // does not return
	case "runner":
		os.Exit(runnerMain())
	default:
		fmt.Fprintf(os.Stderr, "demo: unknown %s=%q\n", roleEnv, role)
		os.Exit(exitUsage)
	}

	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(exitOK)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(exitUsage)
	}
	opts.stderr = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, opts, os.Stdout)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		}
		os.Exit(exitFailure)
	}
}

// errReported says the failure has already been printed.
var errReported = errors.New("failure already reported")

// parseFlags reads the command line. Help goes to w.
func parseFlags(args []string, w io.Writer) (options, error) {
	o := options{port: defaultPort, timeout: 2 * time.Minute, logLevel: slog.LevelWarn, iam: true}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.IntVar(&o.port, "port", o.port, "port of the local AWS endpoint; kumo delivers S3 events only to 4566")
	fs.StringVar(&o.repo, "repo", "", "config repository whose workflows/ and algorithms/ to deploy (default: this checkout's)")
	fs.StringVar(&o.workflow, "workflow", "", "upload the sample to this workflow only (default: every workflow)")
	fs.StringVar(&o.upload, "upload", "", "file to upload (default: a generated file of unsorted lines)")
	fs.StringVar(&o.download, "download", "", "write each result into this directory")
	fs.StringVar(&o.algorithmImage, "algorithm-image", "",
		"run every algorithm from this image instead of its own (one under registry.invalid/ cannot be pulled: its tasks stop and the file is dead-lettered)")
	fs.BoolVar(&o.iam, "iam", true, "authorize every AWS request as IAM would, by the agent's, the stage functions' and the tasks' own roles "+
		"(needs Node.js; the evaluator is installed from the npm registry on first use)")
	fs.BoolVar(&o.once, "once", false, "exit after the sample is processed: 0 if every result arrived")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "with --once, give up after this long")
	level := fs.String("log-level", "warn", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(w, `Usage: go run ./cmd/demo [flags]

Runs cloudpipe on this machine with no AWS account: an in-process AWS
emulator on 127.0.0.1:4566, a local Git repository holding the example
workflows, the agent's reconcile pass deploying them, and a sample file
carried through every pipeline. Tasks run as local processes, not in
containers.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)
	}
	if o.port <= 0 || o.port > 65535 {
		return o, fmt.Errorf("--port %d is not a port", o.port)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("--timeout %v must be positive", o.timeout)
	}
	o.workflow = strings.TrimSpace(o.workflow)
	return o, nil
}
