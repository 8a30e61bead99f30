package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// farRegion is the workflow's region in TestDemoSecondRegion: not the
// agent's.
const farRegion = "eu-west-1"

// TestDemoSecondRegion runs the demo with one workflow whose region is not
// the agent's, under IAM for every principal. The demo prepares that region
// as an operator would (a network, then the agent's bootstrap for it), the
// agent deploys the pipeline there, and the sample goes through it: the
// stage function runs in the workflow's region (its queue is there), the
// runner reads and writes the workflow's buckets there and its run record
// in the state bucket of the agent's region. The buckets, the queue and the
// function are in the workflow's region as the AWS rules see them: a request
// signed for the agent's region does not find them. Then a commit adds a
// workflow in a third region, which the demo prepares before the agent
// deploys there, and a file goes through it too.
//
// The demo runs until stopped, not with --once, so that its endpoint, whose
// rules saw every resource created, can still be asked afterwards.
func TestDemoSecondRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	seq := runSeq.Add(1)
	wf := fmt.Sprintf("far-sort-%d", seq)
	in, out := fmt.Sprintf("cloudpipe-far-%d-in", seq), fmt.Sprintf("cloudpipe-far-%d-out", seq)
	repo := regionRepo(t, wf, in, out)
	dl := t.TempDir()

	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		o := demoOptions(t, repo, bin, seq, &stderr)
		o.download = dl
		runErr = run(ctx, o, &stdout)
	}()
	defer func() {
		cancel()
		<-stopped
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			t.Errorf("demo: %v", runErr)
		}
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), tail(stderr.String(), 60))
	}()
	if err := waitDemoUp(ctx, &stdout, stopped, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bootstrap --region " + farRegion + ": cluster " + provision.DefaultCluster,
		wf + ": done in",
		"AWS_REGION=" + farRegion + " aws --endpoint-url",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	got := readLines(t, filepath.Join(dl, wf, "Result-sort-lines-sample.txt"))
	if want := wantSorted(sampleText); !slices.Equal(got, want) {
		t.Errorf("%s result = %q, want %q", wf, got, want)
	}

	// Where things are, as the demo's rules see them: asked through its
	// endpoint with the operator's credentials, signed for each region.
	queue := provision.ResourceName(wf, 0)
	for _, tc := range []struct {
		region string
		found  bool
	}{
		{farRegion, true},
		{region, false},
	} {
		cfg := testenv.KumoConfig("http://127.0.0.1:4566")
		cfg.Region = tc.region
		for _, bucket := range []string{in, out} {
			_, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
			// S3's 301 PermanentRedirect; a HEAD answer has no body,
			// so the SDK names the error after the status.
			checkFound(t, "HeadBucket "+bucket, tc.region, tc.found, err, "MovedPermanently")
		}
		_, err := sqs.NewFromConfig(cfg).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
		checkFound(t, "GetQueueUrl "+queue, tc.region, tc.found, err, "AWS.SimpleQueueService.NonExistentQueue")
		_, err = awslambda.NewFromConfig(cfg).GetFunction(ctx, &awslambda.GetFunctionInput{FunctionName: aws.String(queue)})
		checkFound(t, "GetFunction "+queue, tc.region, tc.found, err, "ResourceNotFoundException")
	}

	// A commit that adds a workflow in a third region: the demo prepares
	// that region before the agent deploys there, and a file goes through.
	later := fmt.Sprintf("later-sort-%d", seq)
	laterIn, laterOut := fmt.Sprintf("cloudpipe-later-%d-in", seq), fmt.Sprintf("cloudpipe-later-%d-out", seq)
	commitWorkflow(t, demoRepoDir(t, stdout.String()), later, laterIn, laterOut, laterRegion)
	waitOutput(ctx, t, &stdout, "stage functions ready: "+provision.ResourceName(later, 0), time.Minute)
	if want := "bootstrap --region " + laterRegion + ": cluster"; !strings.Contains(stdout.String(), want) {
		t.Errorf("output lacks %q", want)
	}
	cfg := testenv.KumoConfig("http://127.0.0.1:4566")
	cfg.Region = laterRegion
	client := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(laterIn), Key: aws.String("later.txt"),
		Body: bytes.NewReader(sampleText)}); err != nil {
		t.Fatal(err)
	}
	result := "Result-sort-lines-later.txt"
	waitOutput(ctx, t, &stdout, s3URI(laterOut, result), time.Minute)
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(laterOut), Key: aws.String(result)})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lines(b), wantSorted(sampleText); !slices.Equal(got, want) {
		t.Errorf("%s result = %q, want %q", later, got, want)
	}
}

// laterRegion is the region of the workflow TestDemoSecondRegion commits
// while the demo runs.
const laterRegion = "ap-southeast-2"

// demoRepoDir is the config repository the running demo deploys, as its
// instructions name it ("  cd DIR").
func demoRepoDir(t *testing.T, out string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if dir, ok := strings.CutPrefix(strings.TrimSpace(line), "cd "); ok {
			return dir
		}
	}
	t.Fatalf("the demo's output names no repository directory")
	return ""
}

// commitWorkflow commits, to the Git repository at dir, workflow wf from
// in to out in reg through sort-lines, as a person would with git.
func commitWorkflow(t *testing.T, dir, wf, in, out, reg string) {
	t.Helper()
	writeWorkflow(t, dir, wf, in, out, reg)
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add(filepath.Join("workflows", wf+".json")); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "test", Email: "test@cloudpipe.invalid", When: time.Now()}
	if _, err := wt.Commit("Add "+wf, &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatal(err)
	}
}

// waitOutput waits until the demo's output holds want.
func waitOutput(ctx context.Context, t *testing.T, out *syncBuffer, want string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !strings.Contains(out.String(), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("no %q in the demo's output after %v", want, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkFound checks a request signed for region: it succeeds when found,
// else it fails with code.
func checkFound(t *testing.T, what, region string, found bool, err error, code string) {
	t.Helper()
	var apiErr smithy.APIError
	switch {
	case found && err != nil:
		t.Errorf("%s signed for %s: %v, want found", what, region, err)
	case !found && err == nil:
		t.Errorf("%s signed for %s succeeded, want %s: it is in %s", what, region, code, farRegion)
	case !found && (!errors.As(err, &apiErr) || apiErr.ErrorCode() != code):
		t.Errorf("%s signed for %s: %v, want %s", what, region, err, code)
	}
}

// regionRepo writes a config repository with one single_run workflow, wf,
// in farRegion, from in to out through the checkout's sort-lines
// algorithm.
func regionRepo(t *testing.T, wf, in, out string) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range configDirs {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile(filepath.Join(checkoutRoot(t), "algorithms", "sort-lines.json"), filepath.Join(dir, "algorithms", "sort-lines.json")); err != nil {
		t.Fatal(err)
	}
	writeWorkflow(t, dir, wf, in, out, farRegion)
	return dir
}

// writeWorkflow writes workflows/WF.json in the repository at dir: a
// single_run from in to out in reg through sort-lines.
func writeWorkflow(t *testing.T, dir, wf, in, out, reg string) {
	t.Helper()
	b, err := json.MarshalIndent(map[string]any{
		"input_s3_name":  in,
		"output_s3_name": out,
		"region":         reg,
		"process": map[string]any{
			"type":       "single_run",
			"algorithms": []map[string]any{{"name": "sort-lines", "variables": map[string]string{"LC_ALL": "C"}}},
		},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "workflows", wf+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
