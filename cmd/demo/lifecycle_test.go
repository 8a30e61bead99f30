package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// lifecycleChainRegion is the region of the life cycle's sequence_run, not
// the agent's (us-east-1): the demo prepares it as an operator would.
const lifecycleChainRegion = "eu-west-1"

// lifecycleSingleScript is the single_run's algorithm: it sorts its input
// and appends the SHA-256 of the secret and of the access key ID it was
// given in its environment, so the test sees both arrived without either
// being written anywhere.
const lifecycleSingleScript = `#!/bin/sh
LC_ALL=C sort "$1" > "$2"
printf 'password-sha256=%s\n' "$(printf %s "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)" >> "$2"
printf 'key-id-sha256=%s\n' "$(printf %s "$AWS_ACCESS_KEY_ID" | sha256sum | cut -d' ' -f1)" >> "$2"
`

// lifecycleStepScript is each step of the sequence_run: it copies its input
// and appends its step's name and MODE variable.
const lifecycleStepScript = `#!/bin/sh
{ cat "$1"; printf '%s mode=%s\n' "$STEP" "$MODE"; } > "$2"
`

// TestLifecycleUnderIAM runs a whole life cycle through the demo with every
// request authorized as IAM would: a single_run with secrets,
// task_credentials_secret and max_tasks, and a three-stage sequence_run,
// are created (the demo bootstraps first), one upload each goes through the
// data path, the sequence_run is updated and carries a second upload with
// its new variable, and the single_run is deleted. It reports what IAM
// authorized by principal, denials (none allowed) and the statements each
// role held that allowed nothing (none allowed for the stage roles).
func TestLifecycleUnderIAM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo through a life cycle: not in -short")
	}
	bin := demoBinary(t)
	seq := runSeq.Add(1)
	stamp := time.Now().UnixNano()
	ctx := t.Context()

	// The operator's secrets: a database password and the algorithm's own
	// AWS keys.
	sm := secretsmanager.NewFromConfig(testenv.Kumo(t))
	password := fmt.Sprintf("pw-%d-%d", seq, stamp)
	keyID := fmt.Sprintf("AKIALC%014d", stamp%1e14)
	dbSecret := createSecret(t, sm, fmt.Sprintf("cloudpipe-lc-%d-%d-db", seq, stamp), `{"password":"`+password+`"}`)
	keysSecret := createSecret(t, sm, fmt.Sprintf("cloudpipe-lc-%d-%d-keys", seq, stamp),
		`{"AWS_ACCESS_KEY_ID":"`+keyID+`","AWS_SECRET_ACCESS_KEY":"lifecycle-not-a-secret"}`)

	single, chain := fmt.Sprintf("lc-single-%d", seq), fmt.Sprintf("lc-chain-%d", seq)
	names := lifecycleNames{
		single: single, chain: chain,
		singleIn: fmt.Sprintf("cloudpipe-lc-%d-%d-in", seq, stamp%1e6), singleOut: fmt.Sprintf("cloudpipe-lc-%d-%d-out", seq, stamp%1e6),
		chainIn: fmt.Sprintf("cloudpipe-lcc-%d-%d-in", seq, stamp%1e6), chainOut: fmt.Sprintf("cloudpipe-lcc-%d-%d-out", seq, stamp%1e6),
		dbSecret: dbSecret, keysSecret: keysSecret,
	}
	src := names.repo(t, "v1")
	upload := filepath.Join(t.TempDir(), fmt.Sprintf("lc-%d-%d.txt", seq, stamp))
	if err := os.WriteFile(upload, sampleText, 0o644); err != nil {
		t.Fatal(err)
	}
	dl := t.TempDir()

	var (
		mu     sync.Mutex
		report awsrules.Report
		got    bool
	)
	runCtx, cancel := context.WithCancel(ctx)
	var stdout, stderr syncBuffer
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		o := demoOptions(t, src, bin, seq, &stderr)
		o.upload, o.download = upload, dl
		o.iamReport = func(r awsrules.Report) {
			mu.Lock()
			report, got = r, true
			mu.Unlock()
		}
		runErr = run(runCtx, o, &stdout)
	}()
	stopDemo := func() {
		cancel()
		<-stopped
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			t.Errorf("demo: %v", runErr)
		}
	}
	defer func() {
		stopDemo()
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr (end):\n%s", stdout.String(), tail(stderr.String(), 60))
		}
	}()
	if err := waitDemoUp(ctx, &stdout, stopped, 3*time.Minute); err != nil {
		t.Fatal(err)
	}

	if strings.Contains(stdout.String(), "failed:") {
		t.Fatal("a workflow failed to deploy")
	}
	// Created, and one upload each came through (the demo sends its
	// upload to every workflow).
	name := filepath.Base(upload)
	singleResult := readLines(t, filepath.Join(dl, single, "Result-lc-secret-"+name))
	for _, want := range []string{"password-sha256=" + sha256Hex(password), "key-id-sha256=" + sha256Hex(keyID)} {
		if !slices.Contains(singleResult, want) {
			t.Errorf("the single_run's result %q lacks %q: the secret or the task credentials did not reach the algorithm", singleResult, want)
		}
	}
	chainResult := readLines(t, filepath.Join(dl, chain, "Result-lc-c-Result-lc-b-Result-lc-a-"+name))
	if want := []string{"a mode=v1", "b mode=v1", "c mode=v1"}; !slices.Equal(chainResult[len(chainResult)-3:], want) {
		t.Errorf("the sequence_run's result ends %q, want %q", chainResult[len(chainResult)-3:], want)
	}

	repoDir := demoRepoDir(t, stdout.String())
	endpoint := testenv.KumoConfig("http://127.0.0.1:4566") // the demo's, as a user's CLI would use it
	chainCfg := endpoint.Copy()
	chainCfg.Region = lifecycleChainRegion

	// Update: the chain's steps get MODE=v2; a second upload shows it.
	names.write(t, repoDir, "v2", true)
	commit := commitAll(t, repoDir, "chain mode v2")
	waitOutput(ctx, t, &stdout, "commit "+commit[:7]+": +0 create ~1 update -0 delete, 0 failed", 2*time.Minute)
	second := "second-" + name
	s3c := s3.NewFromConfig(chainCfg, testenv.S3PathStyle)
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(names.chainIn), Key: aws.String(second),
		Body: bytes.NewReader(sampleText)}); err != nil {
		t.Fatal(err)
	}
	out := waitObject(t, s3c, names.chainOut, "Result-lc-c-Result-lc-b-Result-lc-a-"+second)
	if !strings.HasSuffix(out, "a mode=v2\nb mode=v2\nc mode=v2\n") {
		t.Errorf("after the update the chain's result ends %q, want every step at mode=v2", tail(out, 3))
	}

	// Delete: the single_run goes; its buckets keep their objects.
	if err := os.Remove(filepath.Join(repoDir, "workflows", single+".json")); err != nil {
		t.Fatal(err)
	}
	commit = commitAll(t, repoDir, "remove "+single)
	waitOutput(ctx, t, &stdout, "commit "+commit[:7]+": +0 create ~0 update -1 delete, 0 failed", 2*time.Minute)
	if _, err := sqs.NewFromConfig(endpoint).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(provision.ResourceName(single, 0))}); err == nil {
		t.Errorf("queue %s is still there after the workflow was deleted", provision.ResourceName(single, 0))
	}
	if _, err := s3.NewFromConfig(endpoint, testenv.S3PathStyle).HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(names.singleOut), Key: aws.String("Result-lc-secret-" + name)}); err != nil {
		t.Errorf("the deleted workflow's result is gone: %v", err)
	}

	stopDemo()
	mu.Lock()
	defer mu.Unlock()
	if !got {
		t.Fatal("the demo reported no IAM figures")
	}
	total, denied := 0, 0
	for _, role := range slices.Sorted(maps.Keys(report.Principals)) {
		p := report.Principals[role]
		total += p.Authorized
		denied += len(p.Denied)
		t.Logf("IAM %-28s %4d authorized, %d denied; statements that allowed nothing: %v", role, p.Authorized, len(p.Denied), report.Unused[role])
		for _, d := range p.Denied {
			t.Errorf("IAM denied %s: %s", role, d)
		}
		// A stage role's policy is the agent's to write: every statement
		// and action must have been needed, here or on a path this life
		// cycle does not take (named in stageActionsElsewhere). The
		// agent's own policy also covers bootstrap paths the demo does not
		// take; deploy's life cycle checks it whole.
		if role == awsrules.AgentRole {
			continue
		}
		for _, u := range report.Unused[role] {
			if _, ok := stageActionsElsewhere[u]; !ok {
				t.Errorf("role %s holds %q, which no request needed", role, u)
			}
		}
	}
	t.Logf("IAM: %d principals, %d authorizations allowed, %d denied", len(report.Principals), total, denied)
}

// stageActionsElsewhere are the actions of the stage roles that a life
// cycle without failures does not use, with where they are used.
var stageActionsElsewhere = map[string]string{
	"Queue: sqs:ChangeMessageVisibility": "the runner's heartbeat and retry delay (runner TestRunHeartbeat, TestRunFailingCommandReachesDeadLetterQueue)",
	"ReadInput: s3:ListBucket":           "a missing input reads as NoSuchKey (runner TestRunMissingObjectFails)",
	// The SDK's upload manager aborts a failed multipart upload, so that
	// its parts are not left (and billed); no test fails a large upload.
	"WriteOutput: s3:AbortMultipartUpload": "a failed multipart upload of a large result",
}

// lifecycleNames are the names of the life cycle's workflows, buckets and
// secrets.
type lifecycleNames struct {
	single, chain                          string
	singleIn, singleOut, chainIn, chainOut string
	dbSecret, keysSecret                   string
}

// repo writes the config repository in a new directory, with the chain's
// MODE set to mode.
func (n lifecycleNames) repo(t *testing.T, mode string) string {
	t.Helper()
	dir := t.TempDir()
	n.write(t, dir, mode, false)
	return dir
}

// write writes the repository's files into dir; with onlyChain, only the
// sequence_run's workflow file.
func (n lifecycleNames) write(t *testing.T, dir, mode string, onlyChain bool) {
	t.Helper()
	scripts := t.TempDir()
	if strings.ContainsAny(scripts, " \t\n") {
		t.Fatalf("temporary directory %q holds white space: the algorithms' commands cannot name a script in it", scripts)
	}
	algorithm := func(name, script string, vars ...string) map[string]any {
		path := filepath.Join(scripts, name+".sh")
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		a := map[string]any{
			"container_name": "docker.io/library/alpine:3.20", "input_file_path": "/tmp/in/", "output_file_path": "/tmp/out/",
			"executable_path": "/bin/sh", "run_command": "/bin/sh " + path + " $input $output", "name": name,
			"memory": map[string]int{"minimal": 128, "suggested": 256}, "CPU": 0.25,
		}
		if len(vars) > 0 {
			var env []map[string]any
			for _, v := range vars {
				env = append(env, map[string]any{"name": v, "required": false})
			}
			a["user_specified_environment_variables"] = env
		}
		return a
	}
	step := func(name string) map[string]any {
		return map[string]any{"name": name, "variables": map[string]string{"STEP": strings.TrimPrefix(name, "lc-"), "MODE": mode}}
	}
	files := map[string]any{
		"workflows/" + n.chain + ".json": map[string]any{
			"input_s3_name": n.chainIn, "output_s3_name": n.chainOut, "region": lifecycleChainRegion,
			"process": map[string]any{"type": "sequence_run", "algorithms": []any{step("lc-a"), step("lc-b"), step("lc-c")}},
		},
	}
	if !onlyChain {
		files["algorithms/lc-secret.json"] = algorithm("lc-secret", lifecycleSingleScript, "DB_PASSWORD")
		for _, a := range []string{"lc-a", "lc-b", "lc-c"} {
			files["algorithms/"+a+".json"] = algorithm(a, lifecycleStepScript, "STEP", "MODE")
		}
		files["workflows/"+n.single+".json"] = map[string]any{
			"input_s3_name": n.singleIn, "output_s3_name": n.singleOut, "region": region, "max_tasks": 2,
			"secrets":                 map[string]string{"DB_PASSWORD": n.dbSecret + ":password::"},
			"task_credentials_secret": n.keysSecret,
			"process":                 map[string]any{"type": "single_run", "algorithms": []any{map[string]any{"name": "lc-secret"}}},
		}
	}
	writeJSONFiles(t, dir, files)
}

func createSecret(t *testing.T, sm *secretsmanager.Client, name, value string) string {
	t.Helper()
	out, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ARN)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// commitAll commits everything in the repository at dir and returns the
// commit's hash.
func commitAll(t *testing.T, dir, message string) string {
	t.Helper()
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", message)
	return strings.TrimSpace(testenv.Git(t, dir, "rev-parse", "HEAD"))
}

// waitObject waits for an object and returns its content.
func waitObject(t *testing.T, c *s3.Client, bucket, key string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			var b bytes.Buffer
			_, err = b.ReadFrom(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return b.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3://%s/%s not there after 2m: %v", bucket, key, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
