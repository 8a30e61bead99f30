package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// gitRepo makes a Git repository holding the checkout's own examples and
// returns its path.
func gitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"workflows", "algorithms"} {
		if err := os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join("..", "..", sub))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Git(t, dir, "init", "-q", "-b", "main")
	testenv.Git(t, dir, "add", ".")
	testenv.Git(t, dir, "commit", "-q", "-m", "examples")
	return dir
}

// asAgentRole makes the agent commands a test runs, in process or as child
// processes, act as the agent's role (testenv.AgentRole) through the AWS
// rules in front of the emulator: every request they send is authorized by
// deploy/agent-iam-policy.json, as IAM would on a real account. The test's
// own set-up keeps the operator's config (testenv.Kumo).
func asAgentRole(t testing.TB) {
	t.Helper()
	asRole(t, testenv.AgentRole)
}

// asRole is asAgentRole for any role: a stage's task role for `agent
// runner`, its Lambda role for the stage function. The secret is any: the
// emulator checks no signature, the key ID names the role.
func asRole(t testing.TB, role string) {
	t.Helper()
	t.Setenv("AWS_ENDPOINT_URL", awsRules(t).URL())
	t.Setenv("AWS_REGION", testenv.Region)
	t.Setenv("AWS_ACCESS_KEY_ID", awsrules.RoleAccessKeyID(role))
	t.Setenv("AWS_SECRET_ACCESS_KEY", "role-session-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

var hexCommit = regexp.MustCompile(`\b[0-9a-f]{7}\b`)

// TestBootstrapPlanSync runs the agent binary against the emulator: bootstrap
// twice, plan, sync, plan again, then remove a workflow and sync again.
func TestBootstrapPlanSync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and provisions the examples")
	}
	asAgentRole(t)
	subnets, sgs := testenv.NewNetwork(t, testenv.Kumo(t))
	repo := gitRepo(t)
	state := "cloudpipe-state-" + testenv.UniqueName(t) // as the agent's policy scopes it
	common := []string{"--state-bucket", state, "--log-format", "json", "--log-level", "warn"}

	code, out, errOut := runAgent(t, repo, append([]string{"bootstrap",
		"--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")}, common...)...)
	if code != exitOK || !strings.Contains(out, "created  s3 bucket "+state) {
		t.Fatalf("bootstrap: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runAgent(t, repo, append([]string{"bootstrap",
		"--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")}, common...)...)
	if code != exitOK || strings.Contains(out, "created") || !strings.Contains(out, "found    s3 bucket "+state) {
		t.Fatalf("second bootstrap should find everything: exit %d\n%s%s", code, out, errOut)
	}

	head := testenv.Git(t, repo, "rev-parse", "--short=7", "HEAD")
	code, out, errOut = runAgent(t, repo, append([]string{"plan", "--repo", "."}, common...)...)
	stage := strings.Repeat(" ", 24) + "stage "
	want := "plan for commit " + head + ": +2 create ~0 update -0 delete, 0 unchanged\n" +
		"  + hello-sort  create  new file workflows/hello-sort.json\n" +
		stage + "0 sort-lines: Fargate 0.25 vCPU/512 MiB\n" +
		"  + text-chain  create  new file workflows/text-chain.json\n" +
		stage + "0 sort-lines: Fargate 0.25 vCPU/512 MiB\n" +
		stage + "1 uniq-lines: Fargate 0.25 vCPU/512 MiB\n" +
		stage + "2 reverse-lines: Fargate 0.25 vCPU/512 MiB\n"
	if code != exitOK || out != want {
		t.Fatalf("plan: exit %d\n got:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}

	code, out, errOut = runAgent(t, repo, append([]string{"sync", "--once", "--repo", "."}, common...)...)
	if code != exitOK {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	for _, line := range []string{
		"hello-sort  create  ok      upload to s3://cloudpipe-example-hello-in · results in s3://cloudpipe-example-hello-out",
		"commit " + head + ": +2 create ~0 update -0 delete, 0 failed",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("sync output lacks %q:\n%s", line, out)
		}
	}
	if !strings.Contains(errOut, "hello-sort: create...") || !strings.Contains(errOut, "hello-sort: create done") {
		t.Errorf("sync shows no progress on stderr:\n%s", errOut)
	}
	// The stage functions hold the agent's own binary (docs/design.md, "One
	// binary, three roles"), stored once in the state bucket under its hash;
	// kumo reports no size for code taken from S3, so the object is looked at.
	fn, err := lambda.NewFromConfig(testenv.Kumo(t)).GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String("cp-hello-sort-0")})
	if err != nil {
		t.Fatalf("stage function: %v", err)
	}
	if fn.Configuration.Runtime != "provided.al2023" {
		t.Errorf("stage function runtime %s, want provided.al2023", fn.Configuration.Runtime)
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := provision.FileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	objects, err := s3.NewFromConfig(testenv.Kumo(t), testenv.S3PathStyle).ListObjectsV2(t.Context(),
		&s3.ListObjectsV2Input{Bucket: aws.String(state), Prefix: aws.String("lambda/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(objects.Contents) != 1 || aws.ToString(objects.Contents[0].Key) != "lambda/"+sum+".zip" || aws.ToInt64(objects.Contents[0].Size) < 1<<20 {
		t.Errorf("code objects in the state bucket: %+v, want one zipped agent, lambda/%s.zip", objects.Contents, sum)
	}

	code, out, _ = runAgent(t, repo, append([]string{"plan", "--repo", "."}, common...)...)
	if code != exitOK || !strings.Contains(out, "+0 create ~0 update -0 delete, 2 unchanged") {
		t.Fatalf("plan after sync: exit %d\n%s", code, out)
	}

	// A setting changed in the console: plan --drift shows it as a line of
	// its own and the workflow as an update; a plan without it reads no
	// deployed resource and shows nothing.
	sqsc := sqs.NewFromConfig(testenv.Kumo(t))
	q, err := sqsc.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String("cp-hello-sort-0")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqsc.SetQueueAttributes(t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: q.QueueUrl,
		Attributes: map[string]string{"VisibilityTimeout": "30"}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runAgent(t, repo, append([]string{"plan", "--repo", ".", "--drift"}, common...)...)
	for _, line := range []string{
		"+0 create ~1 update -0 delete, 1 unchanged",
		"  ~ drift  hello-sort: sqs queue cp-hello-sort-0 VisibilityTimeout 1200 → 30 (changed outside cloudpipe)\n",
	} {
		if code != exitOK || !strings.Contains(out, line) {
			t.Errorf("plan --drift: exit %d, want %q\n%s%s", code, line, out, errOut)
		}
	}
	code, out, _ = runAgent(t, repo, append([]string{"plan", "--repo", "."}, common...)...)
	if code != exitOK || strings.Contains(out, "drift") {
		t.Errorf("plan without --drift: exit %d, want no drift\n%s", code, out)
	}

	testenv.Git(t, repo, "rm", "-q", "workflows/hello-sort.json")
	testenv.Git(t, repo, "commit", "-q", "-m", "remove hello-sort")
	code, out, errOut = runAgent(t, repo, append([]string{"sync", "--once", "--repo", "."}, common...)...)
	if code != exitOK || !regexp.MustCompile(`hello-sort\s+delete\s+ok\s+torn down`).MatchString(out) {
		t.Fatalf("sync after removal: exit %d\n%s%s", code, out, errOut)
	}
	if hexCommit.FindString(out) == "" {
		t.Errorf("sync summary names no commit:\n%s", out)
	}

	// --subnets on sync that differ from the network bootstrap stored win,
	// with a warning naming both.
	otherSubnets, otherSGs := testenv.NewNetwork(t, testenv.Kumo(t))
	code, out, errOut = runAgent(t, repo, append([]string{"sync", "--once", "--repo", ".",
		"--subnets", strings.Join(otherSubnets, ","), "--security-groups", strings.Join(otherSGs, ",")}, common...)...)
	if code != exitOK || !strings.Contains(errOut, "differ from the network bootstrap stored") || !strings.Contains(errOut, otherSubnets[0]) {
		t.Errorf("sync with other --subnets: exit %d, want a warning naming them\n%s%s", code, out, errOut)
	}
}

// TestRunAndSyncRefuseADynamicBuild: an agent built with cgo, as a laptop's
// go run builds it, refuses to deploy itself as the stage functions' code,
// names the build to run instead, and sends no AWS request at all.
func TestRunAndSyncRefuseADynamicBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent with cgo")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler for a cgo build")
	}
	bin := filepath.Join(t.TempDir(), "agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cgo build: %v\n%s", err, out)
	}
	arch := provision.DefaultLambdaArchitecture()
	if err := provision.CheckLambdaExecutable(bin, arch); !errors.Is(err, provision.ErrNotLambdaExecutable) {
		t.Skipf("this toolchain's cgo build is static (%v): nothing to refuse", err)
	}
	var requests atomic.Int64
	fakeAWS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no AWS call expected", http.StatusTeapot)
	}))
	t.Cleanup(fakeAWS.Close)
	repo := gitRepo(t)
	for _, args := range [][]string{
		{"sync", "--once", "--repo", repo, "--state-bucket", "cloudpipe-state-x"},
		{"run", "--repo", repo, "--state-bucket", "cloudpipe-state-x", "--listen", "127.0.0.1:0"},
	} {
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+fakeAWS.URL, "AWS_REGION="+testenv.Region,
			"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=x", "AWS_EC2_METADATA_DISABLED=true")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitFailure {
			t.Errorf("agent %s with a cgo build: %v, want exit %d", args[0], err, exitFailure)
		}
		for _, want := range []string{bin, "dynamically linked", provision.StaticBuildCommand(arch)} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("agent %s: stderr does not say %q:\n%s", args[0], want, stderr.String())
			}
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("a refused build sent %d AWS requests, want none", n)
	}
}
