package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// binDir holds the agent built for tests of what only a real process shows:
// exit codes and the split of stdout and stderr. It is built once, on first
// use, so fuzz workers (which run TestMain too) do not each build it, and
// as it ships (the Dockerfile's flags, scripts/build-binary's build): run
// and sync refuse to deploy anything but a static executable as the stage
// functions' code.
var (
	binDir    string
	buildOnce = sync.OnceValues(func() (string, error) {
		bin := filepath.Join(binDir, "agent")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("build agent: %v\n%s", err, out)
		}
		return bin, nil
	})
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "cloudpipe-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	if deniedAny() && code == 0 {
		code = 1
	}
	testenv.StopServers()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rulesUsed is the AWS-rules proxy once a test has sent role-signed
// requests through it (see awsRules).
var rulesUsed atomic.Pointer[awsrules.Proxy]

// awsRules returns the AWS rules in front of kumo and remembers them, so
// that TestMain can check that no role was denied anything: the agent, the
// stage functions and the runners carry on past some failed calls (a status
// tick, a drift check), and a denial there would pass unseen.
func awsRules(tb testing.TB) *awsrules.Proxy {
	tb.Helper()
	p := testenv.AWSRules(tb)
	rulesUsed.Store(p)
	return p
}

// deniedAny reports, on stderr, every request IAM denied a role during the
// tests, and whether there was one. A denial is either a test acting as
// the wrong principal or a call the role's policy lacks
// (deploy/agent-iam-policy.json, or provision's stage role policies).
func deniedAny() bool {
	p := rulesUsed.Load()
	if p == nil {
		return false
	}
	r := p.Report()
	denied := false
	for _, role := range slices.Sorted(maps.Keys(r.Principals)) {
		for _, d := range r.Principals[role].Denied {
			fmt.Fprintf(os.Stderr, "FAIL: AWS denied role %s: %s\n", role, d)
			denied = true
		}
	}
	return denied
}

// runAgent runs the built binary with a clean CLOUDPIPE_ environment and
// returns its exit code and output.
func runAgent(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run agent %q: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{nil, exitUsage},
		{[]string{"help"}, exitOK},
		{[]string{"-h"}, exitOK},
		{[]string{"--help"}, exitOK},
		{[]string{"help", "validate"}, exitOK},
		{[]string{"help", "nope"}, exitUsage},
		{[]string{"nope"}, exitUsage},
		{[]string{"validate"}, exitUsage},
		{[]string{"validate", "--bogus", "testdata/seed"}, exitUsage},
		{[]string{"validate", "testdata/does-not-exist"}, exitUsage},
		{[]string{"validate", "testdata"}, exitUsage},
		{[]string{"validate", "main.go"}, exitUsage},
		{[]string{"validate", "testdata/seed"}, exitFailure},
		{[]string{"validate", "--json", "testdata/seed"}, exitFailure},
		{[]string{"validate", "testdata/bad/workflows/good.json"}, exitOK},
		{[]string{"validate", "../.."}, exitOK},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runAgent(t, ".", tt.args...)
			if code != tt.want {
				t.Errorf("agent %q exit = %d, want %d\nstdout:\n%s\nstderr:\n%s", tt.args, code, tt.want, stdout, stderr)
			}
			if code == exitUsage && stderr == "" {
				t.Errorf("agent %q: usage error with nothing on stderr", tt.args)
			}
		})
	}
}

// TestHelp checks that `agent help` lists exactly the commands in the table and
// that every command's --help exits 0 and names each flag with its variable.
func TestHelp(t *testing.T) {
	code, stdout, _ := runAgent(t, ".", "help")
	if code != exitOK {
		t.Fatalf("agent help exit = %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(stdout, "\n  "+c.name+" ") {
			t.Errorf("agent help does not list %s:\n%s", c.name, stdout)
		}
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runAgent(t, ".", c.name, "--help")
			if code != exitOK || stderr != "" {
				t.Fatalf("agent %s --help: exit %d, stderr %q", c.name, code, stderr)
			}
			if !strings.HasPrefix(stdout, "Usage: agent "+c.name+" ") {
				t.Errorf("help does not start with the usage line:\n%s", stdout)
			}
			for _, name := range c.flags {
				if !strings.Contains(stdout, "--"+name) || !strings.Contains(stdout, envName(name)) {
					t.Errorf("help of %s lacks --%s or %s:\n%s", c.name, name, envName(name), stdout)
				}
			}
		})
	}
}

func TestPrintFlags(t *testing.T) {
	var buf bytes.Buffer
	printFlags(&buf, []string{"repo", "concurrency", "subnets", "json", "log-format"})
	want := `  --repo string
    	config repository: a Git URL or a local path (env CLOUDPIPE_REPO, required)
  --concurrency int
    	workflows applied at once (env CLOUDPIPE_CONCURRENCY, default "8")
  --subnets list
    	comma-separated subnet IDs for Fargate tasks (env CLOUDPIPE_SUBNETS, default chosen by bootstrap)
  --json
    	print results as JSON (env CLOUDPIPE_JSON)
  --log-format string
    	log format: text or json (env CLOUDPIPE_LOG_FORMAT, default text on a terminal, else json)
`
	if got := buf.String(); got != want {
		t.Errorf("printFlags:\n got:\n%s\nwant:\n%s", got, want)
	}
}
