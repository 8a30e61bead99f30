package sync_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// buildAgent builds the agent binary into dir as it ships (the
// Dockerfile's flags): run and sync deploy only a static executable as the
// stage functions' code, and the stripped binary is the quickest to zip
// when the first pass stores it.
func buildAgent(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "agent")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, "../cmd/agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	return bin
}

// crashWorkflowJSON is a workflow file on the checkout's algorithms:
// sort-lines alone, or sort-lines, uniq-lines, reverse-lines in sequence;
// lc is the LC_ALL of the sort stages, the variable the test changes.
func crashWorkflowJSON(w testWorkflow, lc string) string {
	stages := fmt.Sprintf(`{"name": "sort-lines", "port": [], "variables": {"LC_ALL": %q}}`, lc)
	kind := "single_run"
	if w.stages == 3 {
		kind = "sequence_run"
		stages += fmt.Sprintf(`, {"name": "uniq-lines", "port": [], "variables": {}},
      {"name": "reverse-lines", "port": [], "variables": {"LC_ALL": %q}}`, lc)
	}
	return fmt.Sprintf(`{
  "input_s3_name": %q,
  "output_s3_name": %q,
  "region": "us-east-1",
  "retain_buckets": %v,
  "process": {"type": %q, "algorithms": [
      %s]}
}
`, w.in, w.out, w.retain, kind, stages)
}

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// progressLine matches the agent's progress on stderr: "<wf>: create...",
// "<wf>: create done", "<wf>: delete failed".
var progressLine = regexp.MustCompile(`(?m)^(\S+): (create|update|delete)(\.\.\.| done| failed)$`)

// whereKilled reads the progress a killed agent printed and says where the
// kill landed: "startup" (no workflow started: checking and hashing its
// executable, reading the repository, planning), "apply" or "teardown" (a create/update or a
// delete had started and not finished), or "recording" (every workflow it
// started had finished: saving the outcome).
func whereKilled(stderr string) string {
	open := map[string]string{}
	started := false
	for _, m := range progressLine.FindAllStringSubmatch(stderr, -1) {
		if m[3] == "..." {
			open[m[1]], started = m[2], true
		} else {
			delete(open, m[1])
		}
	}
	if !started {
		return "startup"
	}
	for _, action := range open {
		if action == "delete" {
			return "teardown"
		}
	}
	if len(open) > 0 {
		return "apply"
	}
	return "recording"
}

// agentRun is one `agent sync --once` process.
type agentRun struct {
	killed   bool          // SIGKILLed while running
	code     int           // exit code when it was not killed
	duration time.Duration // until exit or kill
	applyAt  time.Duration // when its first workflow started; 0 if none did
	stdout   string
	stderr   string
}

// kill says when to SIGKILL an agent: after fromStart since it started, or,
// if fromStart is 0, after fromApply since its first workflow started (an
// agent that starts none is never killed). Zero: run to the end.
type kill struct{ fromStart, fromApply time.Duration }

// crashFigures are one lane's results.
type crashFigures struct {
	runs, killed, finished, passes int
	landed, byPhase                map[string]int
	orphans, missing, dups         int
	incons                         int
}

// TestCrashKillResume kills `agent sync --once` with SIGKILL at 50 seeded
// points while the repository moves on (workflows added, their variables
// changed, half of them removed), so kills land in planning, apply,
// teardown and the final inventory write. Clean passes afterwards must
// converge in one or two, leaving every resource on record, nothing
// orphaned or duplicated, and the index and records naming the same
// workflows.
//
// The kills are shared by two lanes run side by side, each with its own
// repository, state bucket and workflows: a lane's first pass zips the
// agent's executable and stores it in the lane's state bucket as the stage
// functions' code, later runs find it there, and two lanes keep the test
// near 2 minutes on two cores.
func TestCrashKillResume(t *testing.T) {
	t.Parallel() // one of the long tests run side by side (see TestDeploy100)
	if testing.Short() {
		t.Skip("builds the agent and kills it 50 times")
	}
	kills, lanes := 50, 2
	if *faultsLong {
		kills = 150
	}
	tmp := t.TempDir()
	bin := buildAgent(t, tmp)
	// The in-process emulator of a -race test binary took about 13 s to
	// accept one CreateFunction carrying the agent's own zipped executable
	// (17 MB; encoding/json under the race detector), when every function
	// carried it; the code is now stored once per state bucket, but a
	// process of its own is still quicker, and also keeps the killed
	// agents' half-sent requests out of the test binary's kumo state.
	kumoURL := testenv.KumoProcess(t, testenv.KumoProcessOptions{})
	// The AWS rules stand in front of it as in front of every emulator:
	// the agents act as their role, under IAM.
	rules, err := testenv.StartAWSRules(t.Context(), kumoURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rules.Close() })
	base := testenv.KumoConfig(rules.URL())

	var mu sync.Mutex
	total := crashFigures{landed: map[string]int{}, byPhase: map[string]int{}}
	t.Cleanup(func() {
		t.Logf("all lanes: %d runs, %d killed mid-pass (by phase %v; landed in %v), %d finished before their kill; "+
			"clean passes to converge %d; orphans %d, missing %d, duplicates %d, index/record mismatches %d",
			total.runs, total.killed, total.byPhase, total.landed, total.finished, total.passes,
			total.orphans, total.missing, total.dups, total.incons)
	})
	for lane := range lanes {
		t.Run(fmt.Sprintf("lane%d", lane), func(t *testing.T) {
			t.Parallel()
			f := crashLane(t, bin, base, *faultsSeed+int64(lane), kills/lanes)
			mu.Lock()
			defer mu.Unlock()
			total.runs += f.runs
			total.killed += f.killed
			total.finished += f.finished
			total.passes = max(total.passes, f.passes)
			total.orphans += f.orphans
			total.missing += f.missing
			total.dups += f.dups
			total.incons += f.incons
			for k, v := range f.landed {
				total.landed[k] += v
			}
			for k, v := range f.byPhase {
				total.byPhase[k] += v
			}
		})
	}
}

// crashLane runs the kill loop of TestCrashKillResume on a repository and
// state bucket of its own, against the kumo at base, and audits the
// result.
func crashLane(t *testing.T, bin string, base aws.Config, seed int64, kills int) crashFigures {
	tmp := t.TempDir()
	kumoURL := aws.ToString(base.BaseEndpoint)
	name := testenv.UniqueName(t)
	state := "cloudpipe-state-" + name // as the agent's policy names state buckets
	subnets, sgs := testenv.NewNetwork(t, base)

	// The config repository: the checkout's algorithms and six workflows,
	// two of them three-stage sequences.
	dir := filepath.Join(tmp, "repo")
	if err := os.CopyFS(filepath.Join(dir, "algorithms"), os.DirFS(filepath.Join("..", "algorithms"))); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, dir, "init", "-q", "-b", "main")
	wfs := make([]testWorkflow, 6)
	for i := range wfs {
		n := fmt.Sprintf("%s-w%d", name, i)
		wfs[i] = testWorkflow{name: n, in: n + "-in", out: n + "-out", stages: 1}
		if i%3 == 1 {
			wfs[i].stages = 3
		}
	}
	present := map[int]bool{}
	lcs := []string{"C", "POSIX", "C.UTF-8"}
	lc := 0
	commit := func(msg string) {
		t.Helper()
		for i, w := range wfs {
			path := filepath.Join(dir, "workflows", w.name+".json")
			if !present[i] {
				_ = os.Remove(path)
				continue
			}
			if err := os.WriteFile(path, []byte(crashWorkflowJSON(w, lcs[lc])), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Git(t, dir, "add", "-A")
		testenv.Git(t, dir, "commit", "-q", "--allow-empty", "-m", msg)
	}

	agentEnv := []string{"AWS_ENDPOINT_URL=" + kumoURL, "AWS_REGION=" + testenv.Region,
		"AWS_ACCESS_KEY_ID=" + awsrules.RoleAccessKeyID(testenv.AgentRole), "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") && !strings.HasPrefix(kv, "AWS_") {
			agentEnv = append(agentEnv, kv)
		}
	}
	start := func(k kill, args ...string) agentRun {
		t.Helper()
		cmd := exec.Command(bin, append([]string{args[0], "--state-bucket", state, "--log-format", "json", "--log-level", "warn"}, args[1:]...)...)
		cmd.Env, cmd.Dir = agentEnv, tmp
		var stdout bytes.Buffer
		stderr := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = &stdout, stderr
		begin := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var deadline time.Time // zero: not armed yet
		if k.fromStart > 0 {
			deadline = begin.Add(k.fromStart)
		}
		// Poll: the first progress line on stderr marks the start of apply.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		run := agentRun{}
		for run.duration == 0 {
			select {
			case err := <-done:
				run.code = cmd.ProcessState.ExitCode()
				if err != nil && run.code < 0 {
					t.Fatalf("agent %v: %v", args, err)
				}
				run.duration = time.Since(begin)
			case now := <-tick.C:
				if run.applyAt == 0 && progressLine.MatchString(stderr.String()) {
					run.applyAt = now.Sub(begin)
					if k.fromStart == 0 && k.fromApply > 0 {
						deadline = now.Add(k.fromApply)
					}
				}
				if !deadline.IsZero() && now.After(deadline) {
					_ = cmd.Process.Kill()
					<-done
					run.killed, run.duration = true, time.Since(begin)
				}
			}
		}
		run.stdout, run.stderr = stdout.String(), stderr.String()
		return run
	}
	syncArgs := []string{"sync", "--once", "--repo", dir, "--agent-id", "crash-test", "--cache-dir", filepath.Join(tmp, "cache")}

	if r := start(kill{}, "bootstrap", "--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")); r.code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// One clean pass creating everything measures a pass.
	for i := range wfs {
		present[i] = true
	}
	commit("all workflows")
	clean := start(kill{}, syncArgs...)
	if clean.code != 0 || clean.applyAt == 0 {
		t.Fatalf("clean pass: exit %d\n%s%s", clean.code, clean.stdout, clean.stderr)
	}
	startup := clean.applyAt
	// How long each phase applies, learnt from runs that end before their
	// kill; the first create is the longest.
	applying := map[string]time.Duration{}
	for _, p := range []string{"add", "update", "delete"} {
		applying[p] = clean.duration - clean.applyAt
	}
	t.Logf("clean pass creating %d workflows: %v, the first workflow starting at %v",
		len(wfs), clean.duration.Round(time.Millisecond), startup.Round(time.Millisecond))

	// Most kills are timed from the start of apply, where the agent
	// changes AWS and the inventory; one in eight from the process start,
	// to hit start-up and the recording of intent.
	rng := rand.New(rand.NewSource(seed))
	landed := map[string]int{}
	byPhase := map[string]int{}
	killed, finished := 0, 0
	loopStart := time.Now()
	for k := 1; killed < kills && k <= 3*kills; k++ {
		// Cycle: change variables, remove half, add them back.
		var phase string
		switch k % 3 {
		case 1:
			phase = "update"
			lc = (lc + 1) % len(lcs)
		case 2:
			phase = "delete"
			for i := range wfs {
				if i%2 == (k/3)%2 {
					present[i] = false
				}
			}
		case 0:
			phase = "add"
			for i := range wfs {
				present[i] = true
			}
		}
		commit(fmt.Sprintf("%s %d", phase, k))
		var when kill
		if rng.Intn(8) == 0 {
			when.fromStart = time.Duration(rng.Int63n(int64(startup))) + 1
		} else {
			when.fromApply = time.Duration(rng.Int63n(int64(applying[phase])+1)) + 1
		}
		r := start(when, syncArgs...)
		if !r.killed {
			finished++
			if r.applyAt > 0 {
				applying[phase] = r.duration - r.applyAt
			}
			continue
		}
		killed++
		landed[whereKilled(r.stderr)]++
		byPhase[phase]++
	}
	loopTook := time.Since(loopStart)

	// Clean passes until one ends with every workflow as the repository says.
	passes := 0
	for {
		passes++
		r := start(kill{}, syncArgs...)
		if r.code == 0 {
			break
		}
		if passes >= 5 {
			t.Fatalf("not converged after %d clean passes; last:\n%s%s", passes, r.stdout, r.stderr)
		}
	}
	// One more must have nothing to do.
	check := start(kill{}, syncArgs...)
	if check.code != 0 || !strings.Contains(check.stdout, "+0 create ~0 update -0 delete, 0 failed") {
		t.Errorf("pass after convergence still works: exit %d\n%s%s", check.code, check.stdout, check.stderr)
	}

	e := &env{t: t, prefix: name, state: state, inv: inventory.NewStore(base, state, true),
		s3: s3.NewFromConfig(base, testenv.S3PathStyle), sqs: sqs.NewFromConfig(base), iam: iam.NewFromConfig(base),
		lambda: lambda.NewFromConfig(base), logs: cloudwatchlogs.NewFromConfig(base)}
	desired := pipesync.LoadDesired(os.DirFS(dir), "")
	if len(desired.Problems) > 0 {
		t.Fatalf("test repository invalid: %v", desired.Problems)
	}
	want := map[string]string{}
	for _, w := range desired.Workflows {
		want[w.Name] = w.SpecHash
	}
	missing, orphans := e.audit(wfs, want)
	dups := e.duplicates(wfs, want)
	incons, markers := e.inventoryConsistent(name)
	for _, m := range missing {
		t.Errorf("missing %s", m)
	}
	for _, o := range orphans {
		t.Errorf("orphan %s", o)
	}
	for _, d := range dups {
		t.Errorf("duplicate %s", d)
	}
	for _, p := range incons {
		t.Errorf("inventory %s", p)
	}
	idx, err := e.inv.ReadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if head := testenv.Git(t, dir, "rev-parse", "HEAD"); idx.Commit != head {
		t.Errorf("index at commit %s, want head %s", idx.Commit, head)
	}
	if killed < kills {
		t.Errorf("only %d of %d runs were killed mid-pass", killed, kills)
	}
	t.Logf("%d runs in %v: %d killed mid-pass (by phase %v; landed in %v), %d finished before their kill; "+
		"converged in %d clean pass(es); orphans %d, missing %d, duplicates %d, index/record mismatches %d (kumo delete markers %d)",
		killed+finished, loopTook.Round(time.Second), killed, byPhase, landed, finished, passes,
		len(orphans), len(missing), len(dups), len(incons), markers)
	return crashFigures{runs: killed + finished, killed: killed, finished: finished, passes: passes,
		landed: landed, byPhase: byPhase, orphans: len(orphans), missing: len(missing), dups: len(dups), incons: len(incons)}
}
