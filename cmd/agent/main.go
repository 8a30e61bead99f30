// Command agent is cloudpipe's one binary: it validates a config repository of
// workflow and algorithm files, plans, syncs and runs the AWS pipelines they
// describe, and is also the pipelines' stage function and runner.
//
// Usage:
//
//	agent COMMAND [flags] [args]
//
// Every flag has an environment variable CLOUDPIPE_<FLAG>; a flag wins over its
// variable, which wins over the default. Exit codes: 0 success, 1 problems found
// or the command failed, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudpipe/cloudpipe/lambda"
)

// Exit codes, the same for every subcommand: scripts rely on them.
const (
	exitOK      = 0 // success
	exitFailure = 1 // problems found, or the command failed
	exitUsage   = 2 // bad command line or configuration
)

// command is one subcommand: its help, the Config flags it reads and the
// function that does the work.
type command struct {
	name     string   // e.g. "validate"
	synopsis string   // what follows the name in the usage line, e.g. "[--json] PATH..."
	summary  string   // one line for the command list
	help     string   // what `agent NAME --help` prints between the usage line and the flags
	flags    []string // names of the options (see config.go) this command reads
	// run does the work with an already parsed and validated Config and the
	// positional arguments. dispatch turns its error into the exit code: see
	// usageError and errReported.
	run func(ctx context.Context, cfg Config, args []string, out streams) error
}

// usageError is a mistake on the command line found by a command itself (a
// missing argument, a path that does not exist): dispatch prints it with the
// usage line and exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// errReported tells dispatch that the command failed and has already said why
// (validate printed its problems), so it exits 1 and prints nothing more.
var errReported = errors.New("failure already reported")

// streams are where a command writes: results on stdout, everything meant for
// a human (summaries, errors, logs) on stderr, so stdout can be piped.
type streams struct {
	stdout, stderr io.Writer
}

// commands lists the subcommands in the order `agent help` shows them. Only
// commands that work belong here: adding one is one line, with the command
// itself defined in its own file (plan.go defines planCommand, and so on).
var commands = []*command{
	validateCommand,
	planCommand,
	syncCommand,
	teardownCommand,
	statusCommand,
	redriveCommand,
	bootstrapCommand,
	runCommand,
	runnerCommand,
	wrapCommand,
	importCommand,
}

func main() {
	// The same binary is the stage functions' code: started by the Lambda
	// runtime, it serves the handler instead of a command.
	if startedAsLambda(os.Getenv, os.Args[0]) {
		lambda.Start()
		return
	}
	// The context ends on SIGINT or SIGTERM so that long-running commands can
	// stop cleanly (ECS sends SIGTERM before it kills a task).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Getenv, streams{os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// dispatch runs the subcommand named by args[0] and returns the exit code. It
// takes the environment as a function so tests can run it in-process.
func dispatch(ctx context.Context, args []string, getenv func(string) string, out streams) int {
	if len(args) == 0 {
		printUsage(out.stderr)
		return exitUsage
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				printCommandHelp(out.stdout, c)
				return exitOK
			}
			fmt.Fprintf(out.stderr, "agent: unknown command %q\n\n", args[1])
			printUsage(out.stderr)
			return exitUsage
		}
		printUsage(out.stdout)
		return exitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(out.stderr, "agent: unknown command %q\n\n", args[0])
		printUsage(out.stderr)
		return exitUsage
	}
	cfg, pos, err := parseFlags(c, args[1:], getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printCommandHelp(out.stdout, c)
		return exitOK
	case err != nil:
		return usageFailure(out.stderr, c, err)
	}
	err = c.run(ctx, cfg, pos, out)
	var uerr usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errReported):
		return exitFailure
	case errors.As(err, &uerr):
		return usageFailure(out.stderr, c, err)
	default:
		fmt.Fprintf(out.stderr, "agent %s: %v\n", c.name, err)
		return exitFailure
	}
}

// lookup returns the command called name, or nil.
func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usageFailure reports a command-line mistake with the command's usage line and
// returns exitUsage.
func usageFailure(w io.Writer, c *command, err error) int {
	fmt.Fprintf(w, "agent %s: %v\n", c.name, err)
	fmt.Fprintf(w, "usage: agent %s %s\nRun 'agent %s --help' for details.\n", c.name, c.synopsis, c.name)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `agent turns a Git repository of workflow JSON files into AWS pipelines.

Usage: agent COMMAND [flags] [args]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'agent COMMAND --help' for a command's flags. Every flag has an environment
variable CLOUDPIPE_<FLAG>; a flag wins over its variable.
Exit codes: 0 success, 1 problems found or failure, 2 usage error.
`)
}

func printCommandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: agent %s %s\n\n%s\n", c.name, c.synopsis, c.help)
	if len(c.flags) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, c.flags)
	}
}
