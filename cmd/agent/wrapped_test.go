package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// TestPlanWrapped: `agent plan` creates the pipeline of an old cloud_pipe
// user's files as they are (testdata/wrapped, see TestValidateWrapped) and
// shows, under its line, the one note that changes what the pipeline does:
// the access keys wrap declared are not passed.
func TestPlanWrapped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and reads the inventory in the emulator")
	}
	asAgentRole(t)
	repo := t.TempDir()
	if err := os.CopyFS(repo, os.DirFS(filepath.Join("testdata", "wrapped"))); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	testenv.Git(t, repo, "add", ".")
	testenv.Git(t, repo, "commit", "-q", "-m", "an old user's files")
	// The state bucket bootstrap would make; the plan only reads it.
	state := "cloudpipe-state-" + testenv.UniqueName(t)
	if _, err := s3.NewFromConfig(testenv.Kumo(t), testenv.S3PathStyle).CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(state)}); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runAgent(t, repo, "plan", "--repo", ".", "--state-bucket", state, "--log-format", "json", "--log-level", "warn")
	head := testenv.Git(t, repo, "rev-parse", "--short=7", "HEAD")
	want := "plan for commit " + head + ": +1 create ~0 update -0 delete, 0 unchanged\n" +
		"  + single-run  create  new file workflows/single-run.json\n" +
		"                        stage 0 change123-s3: Fargate 1 vCPU/2 GiB (t2.micro)\n" +
		"  single-run: algorithms/change123-s3_info.json:51:13: note: user_specified_environment_variables[7].name: " +
		"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are dropped: cloudpipe passes no access keys; " +
		"the algorithm's AWS calls use the stage's task role, or the keys of the workflow's task_credentials_secret\n"
	if code != exitOK || out != want {
		t.Fatalf("plan: exit %d\n got:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	if strings.Contains(out, "key_pair") || strings.Contains(out, "executable_path") {
		t.Errorf("the plan shows notes that change nothing:\n%s", out)
	}
}
