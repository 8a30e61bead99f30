package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// teardownWorkflow is a workflow file of the teardown test: sorter stages
// with buckets the workflow does not keep.
func teardownWorkflow(in, out string, stages int, mode string) string {
	typ, steps := "single_run", []string{fmt.Sprintf(`{"name": "sort-lines", "port": [], "variables": {"LC_ALL": %q}}`, mode)}
	if stages > 1 {
		typ = "sequence_run"
		steps = append(steps, `{"name": "uniq-lines", "port": [], "variables": {}}`)
	}
	return fmt.Sprintf(`{"input_s3_name": %q, "output_s3_name": %q, "region": "us-east-1", "retain_buckets": false,
  "process": {"type": %q, "algorithms": [%s]}}
`, in, out, typ, strings.Join(steps, ", "))
}

// awsListing names every resource of the workflows that exists now, and the
// inventory index as stored, so two listings compare what a command changed.
func awsListing(t *testing.T, state string, workflows map[string]int, buckets []string) []string {
	t.Helper()
	ctx := t.Context()
	cfg := testenv.Kumo(t)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	sqsc, iamc, lambdac, logsc := sqs.NewFromConfig(cfg), iam.NewFromConfig(cfg), lambda.NewFromConfig(cfg), cloudwatchlogs.NewFromConfig(cfg)
	var found []string
	logGroup := func(name string) {
		out, err := logsc.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range out.LogGroups {
			if aws.ToString(g.LogGroupName) == name {
				found = append(found, "loggroup "+name)
			}
		}
	}
	for wf, stages := range workflows {
		logGroup("/cloudpipe/" + wf)
		for i := range stages {
			n := provision.ResourceName(wf, i)
			for _, q := range []string{n, n + "-dlq"} {
				if _, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q)}); err == nil {
					found = append(found, "queue "+q)
				}
			}
			for _, r := range []string{n + "-lambda", n + "-exec", n + "-task"} {
				if _, err := iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r)}); err == nil {
					found = append(found, "role "+r)
				}
			}
			if _, err := lambdac.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(n)}); err == nil {
				found = append(found, "function "+n)
			}
			logGroup("/aws/lambda/" + n)
		}
	}
	for _, b := range buckets {
		if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err == nil {
			found = append(found, "bucket "+b)
		}
	}
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(state), Key: aws.String("inventory/index.json")})
	if err != nil {
		t.Fatalf("read the inventory index: %v", err)
	}
	defer obj.Body.Close()
	index, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	return append(found, "index "+string(index))
}

// TestTeardown deploys two workflows with the agent, then: teardown without
// --yes changes nothing; teardown of one named workflow removes only it,
// keeping and reporting its bucket that holds data; teardown --yes removes
// the rest; later passes leave both down while their files are unchanged
// and deploy one again once its file changes.
func TestTeardown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and provisions two workflows")
	}
	asAgentRole(t)
	subnets, sgs := testenv.NewNetwork(t, testenv.Kumo(t))
	p := testenv.UniqueName(t)
	one, two := p+"-a", p+"-b"
	stages := map[string]int{one: 1, two: 2}
	buckets := []string{one + "-in", one + "-out", two + "-in", two + "-out", provision.IntermediateBucketName(two, 0, "000000000000", testenv.Region)}

	repo := t.TempDir()
	if err := os.CopyFS(filepath.Join(repo, "algorithms"), os.DirFS(filepath.Join("..", "..", "algorithms"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(repo, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeWorkflow := func(name, data string) {
		if err := os.WriteFile(filepath.Join(repo, "workflows", name+".json"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeWorkflow(one, teardownWorkflow(one+"-in", one+"-out", 1, "C"))
	writeWorkflow(two, teardownWorkflow(two+"-in", two+"-out", 2, "C"))
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	testenv.Git(t, repo, "add", ".")
	testenv.Git(t, repo, "commit", "-q", "-m", "two workflows")

	state := "cloudpipe-state-" + p
	common := []string{"--state-bucket", state, "--log-format", "json", "--log-level", "warn"}
	agent := func(args ...string) (int, string, string) {
		t.Helper()
		return runAgent(t, repo, append(args, common...)...)
	}
	if code, out, errOut := agent("bootstrap", "--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")); code != exitOK {
		t.Fatalf("bootstrap: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := agent("sync", "--once", "--repo", "."); code != exitOK {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	// Data in one's input bucket: teardown keeps that bucket and says so.
	s3c := s3.NewFromConfig(testenv.Kumo(t), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(one + "-in"), Key: aws.String("data.txt"),
		Body: strings.NewReader("b\na\n")}); err != nil {
		t.Fatal(err)
	}
	deployed := awsListing(t, state, stages, buckets)
	if n := len(deployed); n < 20 {
		t.Fatalf("after sync only %d resources exist: %q", n, deployed)
	}

	// The plan: both to delete, nothing written.
	code, out, errOut := agent("teardown")
	wantPlan := regexp.MustCompile(`(?s)plan for teardown: \+0 create ~0 update -2 delete.*- ` + one + `\s+delete.*- ` + two + `\s+delete`)
	if code != exitOK || !wantPlan.MatchString(out) || !strings.Contains(errOut, "--yes") {
		t.Fatalf("teardown without --yes: exit %d\n%s%s", code, out, errOut)
	}
	if now := awsListing(t, state, stages, buckets); !slices.Equal(now, deployed) {
		t.Fatalf("teardown without --yes changed resources or the inventory:\nbefore %q\nafter  %q", deployed, now)
	}
	if code, out, errOut := agent("teardown", p+"-nope"); code != exitUsage || !strings.Contains(errOut, p+"-nope") {
		t.Errorf("teardown of an unknown workflow: exit %d, want %d naming it\n%s%s", code, exitUsage, out, errOut)
	}

	// One named workflow: only it goes; its bucket with data stays, reported.
	code, out, errOut = agent("teardown", "--yes", one)
	if code != exitOK || !regexp.MustCompile(one+`\s+delete\s+ok\s+torn down; kept s3://`+one+`-in`).MatchString(out) {
		t.Fatalf("teardown --yes %s: exit %d\n%s%s", one, code, out, errOut)
	}
	left := awsListing(t, state, stages, buckets)
	for _, r := range left[:len(left)-1] {
		if strings.Contains(r, one) && r != "bucket "+one+"-in" {
			t.Errorf("%s left after its teardown", r)
		}
	}
	if kept := slices.DeleteFunc(slices.Clone(deployed[:len(deployed)-1]), func(r string) bool { return strings.Contains(r, one) }); !slices.Equal(kept, filterOut(left[:len(left)-1], one)) {
		t.Errorf("teardown of %s touched %s:\nbefore %q\nafter  %q", one, two, kept, left)
	}

	// The rest.
	code, out, errOut = agent("teardown", "--yes")
	if code != exitOK || !regexp.MustCompile(two+`\s+delete\s+ok\s+torn down`).MatchString(out) || !regexp.MustCompile(one+`\s+torn-down\s+down\s+already torn down`).MatchString(out) {
		t.Fatalf("teardown --yes: exit %d\n%s%s", code, out, errOut)
	}
	gone := awsListing(t, state, stages, buckets)
	if got := gone[:len(gone)-1]; !slices.Equal(got, []string{"bucket " + one + "-in"}) {
		t.Errorf("left after teardown --yes: %q, want only the bucket that holds data", got)
	}

	// A later pass leaves them down while the files are unchanged...
	if code, out, errOut := agent("sync", "--once", "--repo", "."); code != exitOK || !strings.Contains(out, "+0 create ~0 update -0 delete") {
		t.Fatalf("sync after teardown: exit %d\n%s%s", code, out, errOut)
	}
	if now := awsListing(t, state, stages, buckets); !slices.Equal(now[:len(now)-1], gone[:len(gone)-1]) {
		t.Errorf("a pass after teardown re-created %q", now)
	}
	// ... and deploys one again once its file changes.
	writeWorkflow(two, teardownWorkflow(two+"-in", two+"-out", 2, "POSIX"))
	testenv.Git(t, repo, "commit", "-q", "-am", "change two")
	code, out, errOut = agent("plan", "--repo", ".")
	if code != exitOK || !regexp.MustCompile(`\+ `+two+`\s+create\s+workflows/`+two+`.json changed since agent teardown`).MatchString(out) ||
		!regexp.MustCompile(`x `+one+`\s+torn-down`).MatchString(out) {
		t.Errorf("plan after a change: exit %d\n%s%s", code, out, errOut)
	}
}

// filterOut drops the entries that mention s.
func filterOut(list []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(r string) bool { return strings.Contains(r, s) })
}
