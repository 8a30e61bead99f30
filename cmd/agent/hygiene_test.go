package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/webhook"
)

// TestSecretHygiene gives the agent distinctive secrets (the GitHub token,
// the webhook secret, AWS keys and a session token, Secrets Manager values
// referenced by a workflow), runs every role of the binary on them with
// debug JSON logs — `agent run` through a pull request, a merge and good and
// bad webhook deliveries, the stage function, the runner with the secrets in
// its environment as ECS injects them, `agent sync --once`, `agent plan` and
// `agent validate` — and then searches everything they emitted or left
// behind for any of the values, raw or encoded: process output, commit
// statuses, every AWS request body (task definitions included), the stage
// functions' configurations, the state bucket, /metrics and the test's own
// log.
func TestSecretHygiene(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea, kumo and the agent")
	}
	start := time.Now()
	ctx := t.Context()
	tl := &testLog{t: t}
	col := &collector{}
	kumoCfg := testenv.Kumo(t)
	g := testenv.Gitea(t)
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	// The recording proxy sits in front of the AWS rules, so every request
	// it records was also authorized as its signer's role would be.
	proxy := newRecordingProxy(t, awsRules(t).URL(), tl)
	name := testenv.UniqueName(t)
	wf, wfx := name, name+"-x" // the workflow deployed, and one with pasted secrets
	repo := g.RepoName(name)
	state := "cloudpipe-state-" + name // as the agent's policy scopes it
	work := t.TempDir()

	// The canaries. The GitHub token must be real to authenticate, so
	// Gitea's token is one; so are the access key IDs of the roles, which
	// name the role to the AWS rules (awsrules.RoleAccessKeyID). Every
	// other value is random per run. Most hold a '/' and a '+', as real AWS
	// keys do, so their URL-encoded forms differ from them and are searched
	// too.
	var (
		awsKeyID    = awsrules.RoleAccessKeyID(testenv.AgentRole) // the agent's role's session
		awsSecret   = randomString(19, base64ish) + "/" + randomString(19, base64ish) + "+"
		awsSession  = "FwoGZXIvYXdzE" + randomString(120, base64ish) + "/+=="
		hookSecret  = "hook+" + randomString(32, alnum) + "/"
		dbPassword  = "pw/" + randomString(32, base64ish) + "+"
		apiToken    = "api_" + randomString(36, alnum)
		apiJSON     = fmt.Sprintf(`{"token":%q,"scope":"read"}`, apiToken)
		taskKeyID   = "AKIA" + randomString(16, upperDigits)
		taskSecret  = randomString(19, base64ish) + "+" + randomString(19, base64ish) + "/"
		taskJSON    = fmt.Sprintf(`{"AWS_ACCESS_KEY_ID":%q,"AWS_SECRET_ACCESS_KEY":%q}`, taskKeyID, taskSecret)
		roleSecret  = randomString(19, base64ish) + "/" + randomString(19, base64ish) + "+" // the stage's task role, from ECS's credentials endpoint
		roleToken   = "IQoJb3JpZ2luX2Vj" + randomString(100, base64ish) + "/+="
		fnSecret    = randomString(19, base64ish) + "+" + randomString(19, base64ish) + "/" // the stage function's role, as Lambda injects it
		fnSession   = "IQoJb3JpZ2luX2Vj" + randomString(100, base64ish) + "+/="
		pastedValue = "pasted_" + randomString(28, alnum)
		pastedVar   = "pasted/" + randomString(28, base64ish)
	)
	canaries := []canary{
		{"GitHub token (Gitea's)", g.Token},
		{"webhook secret", hookSecret},
		{"AWS access key ID", awsKeyID},
		{"AWS secret access key", awsSecret},
		{"AWS session token", awsSession},
		{"Secrets Manager DB_PASSWORD", dbPassword},
		{"Secrets Manager API_TOKEN (JSON key)", apiToken},
		{"Secrets Manager API_TOKEN (whole JSON)", apiJSON},
		{"task credentials access key ID", taskKeyID},
		{"task credentials secret key", taskSecret},
		{"task credentials (whole JSON)", taskJSON},
		{"task role secret key", roleSecret},
		{"task role session token", roleToken},
		{"stage function role secret key", fnSecret},
		{"stage function role session token", fnSession},
		{"secret value pasted into secrets", pastedValue},
		{"password pasted into variables", pastedVar},
	}
	red := func() redactor { return redactor(canaries) }

	sm := secretsmanager.NewFromConfig(kumoCfg)
	secretARN := func(suffix, value string) string {
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("cloudpipe/" + name + "-" + suffix), SecretString: aws.String(value)})
		if err != nil {
			t.Fatalf("create secret %s: %v", suffix, err)
		}
		return aws.ToString(out.ARN)
	}
	// The agent's policy reads its own secrets only, under cloudpipe/.
	tokenARN := secretARN("github-token", g.Token)
	dbARN := secretARN("db", dbPassword)
	apiARN := secretARN("api", apiJSON)
	taskARN := secretARN("task-keys", taskJSON)
	// What ECS puts in the container's environment for each valueFrom.
	injected := map[string]string{
		dbARN:                                dbPassword,
		apiARN + ":token::":                  apiToken,
		taskARN + ":AWS_ACCESS_KEY_ID::":     taskKeyID,
		taskARN + ":AWS_SECRET_ACCESS_KEY::": taskSecret,
	}
	wantSecrets := map[string]string{"DB_PASSWORD": dbARN, "API_TOKEN": apiARN + ":token::",
		"CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID":     taskARN + ":AWS_ACCESS_KEY_ID::",
		"CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY": taskARN + ":AWS_SECRET_ACCESS_KEY::"}

	// The config repository: the examples' algorithms and one that reads
	// two secrets. Its command is a script that records a digest of the
	// secrets it was given, proving the runner passed them on.
	script := filepath.Join(work, "digest-secrets")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
set -e
sort -o "$2" "$1"
printf '%s\n%s\n%s' "$DB_PASSWORD" "$API_TOKEN" "$AWS_SECRET_ACCESS_KEY" | sha256sum | cut -c1-64 >> "$2"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	algorithm := fmt.Sprintf(`{"container_name": "docker.io/library/alpine:3.20", "system": "alpine",
 "input_file_path": %q, "output_file_path": %q, "executable_path": %q, "run_command": %q,
 "name": "digest-secrets", "instance_type": "", "memory": {"minimal": 256, "suggested": 512}, "CPU": 0.25,
 "user_specified_environment_variables": [{"name": "DB_PASSWORD", "required": true}, {"name": "API_TOKEN", "required": true},
  {"name": "LC_ALL", "required": false}], "port": []}`,
		filepath.Join(work, "in")+"/", filepath.Join(work, "out")+"/", script, script+" $input $output")
	workflowFile := func(lcAll string) string {
		return fmt.Sprintf(`{"input_s3_name": "%s-in", "output_s3_name": "%s-out", "region": "us-east-1",
 "secrets": {"DB_PASSWORD": %q, "API_TOKEN": %q}, "task_credentials_secret": %q,
 "process": {"type": "single_run", "algorithms": [{"name": "digest-secrets", "port": [], "variables": {"LC_ALL": %q}}]}}`,
			wf, wf, dbARN, apiARN+":token::", taskARN, lcAll)
	}
	// A user who pasted values where ARNs belong: validation must refuse
	// the file without repeating them.
	pastedFile := fmt.Sprintf(`{"input_s3_name": "%s-in", "output_s3_name": "%s-out", "region": "us-east-1",
 "secrets": {"API_TOKEN": %q},
 "process": {"type": "single_run", "algorithms": [{"name": "digest-secrets", "port": [], "variables": {"DB_PASSWORD": %q}}]}}`,
		wfx, wfx, pastedValue, pastedVar)

	cloneURL := g.CreateRepo(t, name)
	files := map[string]string{"algorithms/digest-secrets.json": algorithm}
	examples, err := filepath.Glob(filepath.Join("..", "..", "algorithms", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range examples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files["algorithms/"+filepath.Base(f)] = string(data)
	}
	algCommit := g.CommitFiles(t, name, testenv.ChangeFiles{Message: "algorithms", Write: files})

	// Every process gets a clean environment: no CLOUDPIPE_ or AWS_
	// variable of the test's own.
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") && !strings.HasPrefix(kv, "AWS_") {
			base = append(base, kv)
		}
	}
	awsEnv := append(slices.Clip(base), "AWS_ENDPOINT_URL="+proxy.URL, "AWS_REGION="+testenv.Region, "AWS_EC2_METADATA_DISABLED=true")
	agentEnv := append(slices.Clip(awsEnv), "AWS_ACCESS_KEY_ID="+awsKeyID, "AWS_SECRET_ACCESS_KEY="+awsSecret, "AWS_SESSION_TOKEN="+awsSession)
	// The one-shot commands get the agent's secrets by value, as an
	// operator's shell would hold them; they must not print them either.
	cliEnv := append(slices.Clip(agentEnv), "CLOUDPIPE_GITHUB_TOKEN="+g.Token, "CLOUDPIPE_WEBHOOK_SECRET="+hookSecret)
	debug := []string{"--log-format", "json", "--log-level", "debug"}

	run := func(label string, env []string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			t.Fatalf("agent %s: %v", label, err)
		}
		col.add("process output", "agent "+label+" stdout", out.Bytes())
		col.add("process output", "agent "+label+" stderr", errOut.Bytes())
		tl.Logf("agent %s: exit %d, %d bytes on stdout, %d on stderr", label, code, out.Len(), errOut.Len())
		return code, out.String(), errOut.String()
	}

	// The input bucket is the user's, with the file already in it: the
	// agent adopts it as it is. Uploading before the agent adds its
	// notification keeps kumo from trying to deliver an S3 event (to
	// localhost:4566); the test invokes the stage function itself.
	s3c := s3.NewFromConfig(kumoCfg, testenv.S3PathStyle)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(wf + "-in")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(wf + "-in"), Key: aws.String("in/data.txt"),
		Body: strings.NewReader("b\na\n")}); err != nil {
		t.Fatal(err)
	}
	subnets, sgs := testenv.NewNetwork(t, kumoCfg)
	if code, out, errOut := run("bootstrap", cliEnv, append([]string{"bootstrap", "--state-bucket", state,
		"--subnets", strings.Join(subnets, ","), "--security-groups", strings.Join(sgs, ",")}, debug...)...); code != exitOK {
		t.Fatalf("bootstrap: exit %d\n%s", code, red().redact(out+errOut))
	}

	// The daemon reads the token from Secrets Manager, as deployed, and
	// the webhook secret from its environment.
	daemonCache := t.TempDir()
	var daemonOut bytes.Buffer
	d := startDaemon(t, bin, append(slices.Clip(agentEnv), "CLOUDPIPE_GITHUB_TOKEN_SECRET="+tokenARN, "CLOUDPIPE_WEBHOOK_SECRET="+hookSecret),
		&daemonOut, append([]string{"--repo", cloneURL, "--github-api", g.APIURL, "--github-repo", repo, "--state-bucket", state,
			"--schedule", "@every 1h", "--agent-id", "hygiene", "--cache-dir", daemonCache}, debug...)...)
	if !waitFor(60*time.Second, func() bool { return d.get("/readyz") == http.StatusOK }) {
		t.Fatalf("agent never became ready:\n%s", red().redact(d.logs.text()))
	}
	tl.Logf("agent run ready after %s", time.Since(start).Round(time.Millisecond))

	deliver := func(label, event string, body []byte, sig string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/hooks/github", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", label+"-"+name)
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("deliver %s: %v", label, err)
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		col.add("http answer", "webhook "+label, answer)
		tl.Logf("webhook %s (%d bytes): %d", label, len(body), resp.StatusCode)
		return resp.StatusCode
	}
	statusesOf := func(sha string) []giteaStatus {
		var out []giteaStatus
		g.API(t, http.MethodGet, "repos/"+repo+"/commits/"+sha+"/statuses?limit=50", nil, &out)
		return out
	}
	findStatus := func(sha, context, state string) (giteaStatus, bool) {
		for _, s := range statusesOf(sha) {
			if s.Context == context && s.state() == state {
				return s, true
			}
		}
		return giteaStatus{}, false
	}
	waitStatus := func(sha, context string, states ...string) giteaStatus {
		t.Helper()
		var got giteaStatus
		if !waitFor(90*time.Second, func() bool {
			for _, st := range states {
				if s, ok := findStatus(sha, context, st); ok {
					got = s
					return true
				}
			}
			return false
		}) {
			t.Fatalf("no %s status %v on %.7s:\n%s", context, states, sha, red().redact(d.logs.text()))
		}
		return got
	}

	// Two pull requests: one adds the workflow, one pastes secrets in.
	pr1Head := g.CommitFiles(t, name, testenv.ChangeFiles{NewBranch: "add-workflow", Message: "add " + wf,
		Write: map[string]string{"workflows/" + wf + ".json": workflowFile("C")}})
	pr2Head := g.CommitFiles(t, name, testenv.ChangeFiles{NewBranch: "pasted-secrets", Message: "add " + wfx,
		Write: map[string]string{"workflows/" + wfx + ".json": pastedFile}})
	pr1 := g.CreatePullRequest(t, name, "add-workflow", "main", "add "+wf)
	pr2 := g.CreatePullRequest(t, name, "pasted-secrets", "main", "add "+wfx)
	prEvent := []byte(fmt.Sprintf(`{"action":"opened","number":%d,"pull_request":{"number":%d},"repository":{"full_name":%q}}`, pr1, pr1, repo))
	if code := deliver("pull-request", "pull_request", prEvent, webhook.Sign(secret.New(hookSecret), prEvent)); code != http.StatusAccepted {
		t.Fatalf("signed pull_request delivery: %d, want 202", code)
	}
	waitStatus(pr1Head, "cloudpipe/plan", "success")
	pasted := waitStatus(pr2Head, "cloudpipe/plan", "failure")
	tl.Logf("plan statuses posted on both pull requests; the pasted one says %q", red().redact(pasted.Description))

	// Deliveries the agent must refuse. The right signature of the badly
	// signed one is a canary too: logging it would hand out a forgery.
	badBody := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"full_name":%q}}`, pr1Head, repo))
	canaries = append(canaries, canary{"correct signature of the badly signed delivery",
		strings.TrimPrefix(webhook.Sign(secret.New(hookSecret), badBody), "sha256=")})
	for _, c := range []struct {
		label string
		body  []byte
		sig   string
		want  int
	}{
		{"bad-signature", badBody, webhook.Sign(secret.New("not-the-secret"), badBody), http.StatusUnauthorized},
		{"unsigned", badBody, "", http.StatusUnauthorized},
		{"malformed-signature", badBody, "sha256=" + strings.Repeat("zz", 32), http.StatusUnauthorized},
		{"oversized", bytes.Repeat([]byte{'x'}, webhook.MaxBody+1), webhook.Sign(secret.New(hookSecret), []byte("x")), http.StatusRequestEntityTooLarge},
	} {
		if code := deliver(c.label, "push", c.body, c.sig); code != c.want {
			t.Errorf("%s delivery: %d, want %d", c.label, code, c.want)
		}
	}

	// Merge: the signed push makes the agent deploy the workflow.
	merge := g.MergePullRequest(t, name, pr1)
	push := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"full_name":%q}}`, merge, repo))
	if code := deliver("push", "push", push, webhook.Sign(secret.New(hookSecret), push)); code != http.StatusAccepted {
		t.Fatalf("signed push delivery: %d, want 202", code)
	}
	deployed := waitStatus(merge, "cloudpipe/"+wf, "success", "failure")
	if deployed.state() != "success" {
		t.Fatalf("deploy failed: %s\n%s", red().redact(deployed.Description), red().redact(d.logs.text()))
	}
	tl.Logf("workflow deployed by agent run after %s", time.Since(start).Round(time.Millisecond))

	// The stage function, started as the Lambda runtime starts it, with
	// the environment the agent gave it and the AWS keys Lambda injects:
	// its role's.
	fn := provision.ResourceName(wf, 0)
	lc := awslambda.NewFromConfig(kumoCfg)
	conf, err := lc.GetFunctionConfiguration(ctx, &awslambda.GetFunctionConfigurationInput{FunctionName: aws.String(fn)})
	if err != nil || conf.Environment == nil {
		t.Fatalf("stage function configuration: %v", err)
	}
	fnKeyID := awsrules.RoleAccessKeyID(roleName(aws.ToString(conf.Role)))
	lambdaEnv := append(slices.Clip(awsEnv), "AWS_ACCESS_KEY_ID="+fnKeyID, "AWS_SECRET_ACCESS_KEY="+fnSecret, "AWS_SESSION_TOKEN="+fnSession,
		"AWS_LAMBDA_FUNCTION_NAME="+fn, "CLOUDPIPE_LAMBDA=1", "CLOUDPIPE_LOG_LEVEL=debug",
		"AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(proxy.URL, "http://")+"/_runtime/"+fn)
	for _, k := range slices.Sorted(maps.Keys(conf.Environment.Variables)) {
		lambdaEnv = append(lambdaEnv, k+"="+conf.Environment.Variables[k])
	}
	invokeLambda(t, tl, col, bin, lambdaEnv, lc, fn, fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
 "eventTime":"2026-01-02T03:04:05Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"%s-in"},"object":{"key":"in/data.txt","size":4,"eTag":"e1"}}}]}`, wf))

	// The runner, with the environment of the task definition the agent
	// registered and the secrets resolved as ECS injects them.
	tds := taskDefinitions(t, proxy, fn)
	if len(tds) == 0 {
		t.Fatalf("agent run registered no task definition for %s", fn)
	}
	// The runner gets the task role's credentials as on ECS, from the
	// container credentials endpoint: those of the task definition's task
	// role. The task-credentials secret's keys are for the algorithm alone.
	roleKeyID := awsrules.RoleAccessKeyID(roleName(tds[len(tds)-1].TaskRoleArn))
	roleCreds := newTaskRoleEndpoint(t, roleKeyID, roleSecret, roleToken)
	runnerEnv := append(slices.Clip(awsEnv), "CLOUDPIPE_WAIT_TIME=1", "CLOUDPIPE_IDLE_TIMEOUT=2",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI="+roleCreds.URL)
	for _, c := range tds[len(tds)-1].ContainerDefinitions {
		if c.Name != "digest-secrets" {
			continue
		}
		for _, kv := range c.Environment {
			runnerEnv = append(runnerEnv, kv.Name+"="+kv.Value)
		}
		for _, s := range c.Secrets {
			v, ok := injected[s.ValueFrom]
			if !ok {
				t.Fatalf("task definition maps %s from %q, which is none of the test's secrets", s.Name, s.ValueFrom)
			}
			runnerEnv = append(runnerEnv, s.Name+"="+v)
		}
	}
	if code, out, errOut := run("runner", runnerEnv, append([]string{"runner"}, debug...)...); code != exitOK {
		t.Fatalf("runner: exit %d\n%s", code, red().redact(out+errOut))
	}
	if n := proxy.signedWith(taskKeyID); n != 0 {
		t.Errorf("%d AWS requests signed with the task-credentials secret's key: the runner must sign as the task role", n)
	}
	if n := proxy.signedWith(roleKeyID); n == 0 {
		t.Errorf("no AWS request signed with the task role's key: the runner did not use the task role")
	}
	res, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(wf + "-out"), Key: aws.String("in/Result-digest-secrets-data.txt")})
	if err != nil {
		t.Fatalf("no result of the run: %v", err)
	}
	result, _ := io.ReadAll(res.Body)
	res.Body.Close()
	col.add("output object", "s3://"+wf+"-out/in/Result-digest-secrets-data.txt", result)
	digest := sha256.Sum256([]byte(dbPassword + "\n" + apiToken + "\n" + taskSecret))
	if want := "a\nb\n" + hex.EncodeToString(digest[:]) + "\n"; string(result) != want {
		t.Errorf("result %q: the algorithm did not get the secrets ECS would inject (want the sorted input and their digest)", result)
	}

	for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
		resp, err := http.Get(d.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		kind := "http answer"
		if path == "/metrics" {
			kind = "metrics page"
		}
		col.add(kind, "agent run "+path, body)
	}
	d.stop(t)
	col.add("process output", "agent run stderr", []byte(d.logs.text()))
	col.add("process output", "agent run stdout", daemonOut.Bytes())
	for _, outcome := range []string{"unauthorized", "too_large", "accepted"} {
		if !strings.Contains(d.logs.text(), `"outcome":"`+outcome+`"`) {
			t.Errorf("agent run logged no webhook delivery with outcome %s", outcome)
		}
	}

	// sync --once applies a change; plan and validate read the pasted file.
	update := g.CommitFiles(t, name, testenv.ChangeFiles{Message: "update " + wf,
		Write: map[string]string{"workflows/" + wf + ".json": workflowFile("POSIX")}})
	code, out, errOut := run("sync", cliEnv, append([]string{"sync", "--once", "--repo", cloneURL, "--state-bucket", state,
		"--agent-id", "hygiene", "--cache-dir", t.TempDir()}, debug...)...)
	if code != exitOK || !regexp.MustCompile(regexp.QuoteMeta(wf)+`\s+update\s+ok`).MatchString(out) {
		t.Errorf("sync --once: exit %d, want an applied update of %s\n%s", code, wf, red().redact(out+errOut))
	}
	// plan gets the token inside the repository URL, a common way to pass
	// one: the URL must not carry it into logs, errors or the Git cache.
	planCache := t.TempDir()
	code, out, errOut = run("plan", cliEnv, append([]string{"plan", "--repo", g.PushURL(name), "--ref", pr2Head, "--state-bucket", state,
		"--agent-id", "hygiene", "--cache-dir", planCache}, debug...)...)
	if code != exitOK || !regexp.MustCompile(`!\s+`+regexp.QuoteMeta(wfx)+`\s`).MatchString(out) {
		t.Errorf("plan --ref of the pasted pull request: exit %d, want %s invalid\n%s", code, wfx, red().redact(out+errOut))
	}
	local := filepath.Join(work, "checkout")
	for path, content := range map[string]string{"algorithms/digest-secrets.json": algorithm, "workflows/" + wfx + ".json": pastedFile} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(local, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(local, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"validate", local}, {"validate", "--json", local}} {
		if code, out, _ := run(strings.Join(args[:len(args)-1], " "), cliEnv, args...); code != exitFailure || !strings.Contains(out, "DB_PASSWORD") {
			t.Errorf("agent %s on the pasted file: exit %d, want 1 and a problem with DB_PASSWORD\n%s", args[:len(args)-1], code, red().redact(out))
		}
	}

	// Collect what the runs left behind.
	nStatuses := 0
	for _, sha := range []string{algCommit, pr1Head, pr2Head, merge, update} {
		var raw json.RawMessage
		g.API(t, http.MethodGet, "repos/"+repo+"/commits/"+sha+"/statuses?limit=50", nil, &raw)
		col.add("commit statuses", "statuses of "+sha[:7], raw)
		nStatuses += len(statusesOf(sha))
	}
	for _, n := range []int{pr1, pr2} {
		var raw json.RawMessage
		g.API(t, http.MethodGet, fmt.Sprintf("repos/%s/issues/%d/comments", repo, n), nil, &raw)
		col.add("pull request comments", fmt.Sprintf("comments of #%d", n), raw)
	}
	functions := createdFunctions(t, proxy)
	if !slices.Contains(functions, fn) {
		t.Errorf("recorded CreateFunction calls %v do not include %s", functions, fn)
	}
	for _, f := range functions {
		c, err := lc.GetFunctionConfiguration(ctx, &awslambda.GetFunctionConfigurationInput{FunctionName: aws.String(f)})
		if err != nil {
			t.Fatalf("configuration of %s: %v", f, err)
		}
		if c.Environment == nil || c.Environment.Variables["CLOUDPIPE_TASK_DEFINITION"] == "" {
			t.Errorf("function %s has no task definition in its environment", f)
		}
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		col.add("lambda configuration", f, data)
	}
	objects := listObjects(t, s3c, state)
	for key, data := range objects {
		col.add("state bucket object", key, data)
	}
	collectGitCache(t, col, daemonCache)
	collectGitCache(t, col, planCache)

	requests := proxy.requests()
	// Every process signed as its own role, which the AWS rules authorized:
	// the agent's commands as the agent, the stage function as its Lambda
	// role, the runner as the task role. Unsigned requests are the Lambda
	// Runtime API's.
	principals := map[string]string{awsKeyID: "the agent's role", fnKeyID: "the stage function's role", roleKeyID: "the task role"}
	signed := map[string]int{}
	for _, r := range requests {
		if r.keyID == "" {
			continue
		}
		if _, ok := principals[r.keyID]; !ok {
			t.Errorf("request %s (%s) signed with a key of none of the roles", r.op, r.uri)
		}
		signed[r.keyID]++
	}
	for key, who := range principals {
		if signed[key] == 0 {
			t.Errorf("no AWS request signed as %s", who)
		}
	}
	tl.Logf("AWS requests signed as the agent's role: %d, the stage function's: %d, the task role's: %d",
		signed[awsKeyID], signed[fnKeyID], signed[roleKeyID])
	nTaskDefs := 0
	for i, r := range requests {
		kind := "aws request body"
		if r.op == "ECS.RegisterTaskDefinition" {
			kind, nTaskDefs = "task definition", nTaskDefs+1
		}
		col.add(kind, fmt.Sprintf("request %d %s (%s)", i, r.op, r.uri), append([]byte(r.uri+"\n"), r.body...))
	}

	// Positive checks, so the scan cannot pass on empty collections: the
	// task definitions reference the secrets by ARN, both of agent run's
	// and of sync's update.
	tds = taskDefinitions(t, proxy, fn)
	if len(tds) < 2 {
		t.Errorf("%d task definitions registered for %s, want 2 (create by agent run, update by sync)", len(tds), fn)
	}
	for i, td := range tds {
		got := map[string]string{}
		for _, c := range td.ContainerDefinitions {
			for _, s := range c.Secrets {
				got[s.Name] = s.ValueFrom
			}
		}
		if !maps.Equal(got, wantSecrets) {
			t.Errorf("task definition %d of %s maps secrets %v, want %v by valueFrom", i, fn, got, wantSecrets)
		}
	}
	if nStatuses < 4 || len(objects) == 0 || len(functions) == 0 || nTaskDefs == 0 {
		t.Errorf("collected %d statuses, %d state objects, %d functions, %d task definitions: want all non-empty",
			nStatuses, len(objects), len(functions), nTaskDefs)
	}

	// The scan, the test's own log last. Non-secret values known to pass
	// through each kind of source are searched as controls: each must be
	// found, or the collection of that kind did not hold what it should.
	sources := append(col.all(), source{kind: "test log", name: "TestSecretHygiene log", data: tl.bytes()})
	for _, c := range []struct {
		value string
		kinds []string
	}{
		{dbARN, []string{"task definition", "aws request body"}}, // valueFrom; the execution role's policy
		{"cloudpipe/" + wf, []string{"commit statuses", "process output"}},
		{fn, []string{"lambda configuration", "state bucket object", "process output"}},
		{"cloudpipe_webhook_deliveries_total", []string{"metrics page"}},
	} {
		for _, kind := range c.kinds {
			found := false
			for _, l := range scan(sources, []canary{{"control", c.value}}) {
				found = found || l.source.kind == kind
			}
			if !found {
				t.Errorf("control %q not found in any %s: the scan would miss a leak there", c.value, kind)
			}
		}
	}
	leaks := scan(sources, canaries)
	for _, l := range leaks {
		t.Errorf("LEAK: %s found %s in %s %q at byte %d: ...%s...", l.canary, l.encoding, l.source.kind, l.source.name, l.offset, red().context(l))
	}
	type figure struct{ sources, bytes int }
	figures := map[string]*figure{}
	var total figure
	for _, s := range sources {
		f := figures[s.kind]
		if f == nil {
			f = &figure{}
			figures[s.kind] = f
		}
		f.sources++
		f.bytes += len(s.data)
		total.sources++
		total.bytes += len(s.data)
	}
	forms := 0
	for _, c := range canaries {
		forms += len(needles(c.value))
	}
	for _, k := range slices.Sorted(maps.Keys(figures)) {
		if figures[k].bytes == 0 {
			t.Errorf("nothing collected of %s", k)
		}
		tl.Logf("  %-22s %4d sources %11d bytes", k, figures[k].sources, figures[k].bytes)
	}
	tl.Logf("scanned %d bytes from %d sources for %d canaries in %d forms: %d leaks (%s)",
		total.bytes, total.sources, len(canaries), forms, len(leaks), time.Since(start).Round(time.Millisecond))
}

// giteaStatus is a commit status as Gitea's API returns it.
type giteaStatus struct {
	Context     string `json:"context"`
	Status      string `json:"status"` // Gitea's name for the state
	State       string `json:"state"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
}

func (s giteaStatus) state() string {
	if s.State != "" {
		return s.State
	}
	return s.Status
}

// startDaemon starts `agent run` with exactly env, its stdout going to
// stdout, and waits until it serves /healthz. Unlike startAgent it keeps
// stdout, which the hygiene test scans too, and never prints the logs.
func startDaemon(t *testing.T, bin string, env []string, stdout io.Writer, args ...string) *agentProc {
	t.Helper()
	return launchAgent(t, bin, env, stdout, false, args...)
}

// invokeLambda runs the agent binary as the stage function fn against
// kumo's runtime API (through the proxy), invokes it once with event and
// collects its output.
func invokeLambda(t *testing.T, tl *testLog, col *collector, bin string, env []string, lc *awslambda.Client, fn, event string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill() // the Lambda runtime freezes and kills handlers too
			_ = cmd.Wait()
			col.add("process output", "stage function "+fn, out.Bytes())
			tl.Logf("stage function %s: %d bytes of output", fn, out.Len())
		}
	}
	t.Cleanup(stop)
	// Until the handler has polled once, kumo answers that the function
	// has no handler: retry for a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := lc.Invoke(t.Context(), &awslambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(event)})
		if err == nil {
			if res.FunctionError != nil {
				t.Fatalf("stage function failed: %s", aws.ToString(res.FunctionError))
			}
			col.add("http answer", "stage function "+fn+" result", res.Payload)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage function never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if !bytes.Contains(out.Bytes(), []byte(`"msg":"event handled"`)) {
		t.Errorf("stage function logged no handled event (%d bytes of output)", out.Len())
	}
}

// taskDefinition is the part of a RegisterTaskDefinition request the test
// reads.
type taskDefinition struct {
	Family               string `json:"family"`
	TaskRoleArn          string `json:"taskRoleArn"`
	ContainerDefinitions []struct {
		Name        string `json:"name"`
		Environment []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"environment"`
		Secrets []struct {
			Name      string `json:"name"`
			ValueFrom string `json:"valueFrom"`
		} `json:"secrets"`
	} `json:"containerDefinitions"`
}

// taskDefinitions decodes the recorded RegisterTaskDefinition requests of
// family, oldest first. kumo drops secrets from what it stores, so the
// requests are the only faithful record.
func taskDefinitions(t *testing.T, p *recordingProxy, family string) []taskDefinition {
	t.Helper()
	var out []taskDefinition
	for _, r := range p.requests() {
		if r.op != "ECS.RegisterTaskDefinition" {
			continue
		}
		var td taskDefinition
		if err := json.Unmarshal(r.body, &td); err != nil {
			t.Fatalf("decode RegisterTaskDefinition request: %v", err)
		}
		if td.Family == family {
			out = append(out, td)
		}
	}
	return out
}

// createdFunctions returns the names of the functions the recorded
// CreateFunction requests created.
func createdFunctions(t *testing.T, p *recordingProxy) []string {
	t.Helper()
	var out []string
	for _, r := range p.requests() {
		if r.op != "Lambda.CreateFunction" {
			continue
		}
		var in struct{ FunctionName string }
		if err := json.Unmarshal(r.body, &in); err != nil {
			t.Fatalf("decode CreateFunction request: %v", err)
		}
		if !slices.Contains(out, in.FunctionName) {
			out = append(out, in.FunctionName)
		}
	}
	return out
}

// listObjects returns every object of bucket by key.
func listObjects(t *testing.T, c *s3.Client, bucket string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("list s3://%s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			res, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			if err != nil {
				t.Fatalf("get s3://%s/%s: %v", bucket, aws.ToString(o.Key), err)
			}
			data, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[aws.ToString(o.Key)] = data
		}
	}
	return out
}

// collectGitCache adds the agent's Git cache, minus the object store (whose
// zlib-compressed contents cannot be searched as text): its config, refs
// and logs are where a token embedded in a remote URL would land.
func collectGitCache(t *testing.T, col *collector, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "objects" {
			return filepath.SkipDir
		}
		if e.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		col.add("git cache file", rel, data)
		return nil
	})
	if err != nil {
		t.Fatalf("read git cache: %v", err)
	}
}

// newTaskRoleEndpoint serves a task role's credentials as ECS's container
// credentials endpoint does (AWS_CONTAINER_CREDENTIALS_FULL_URI; the SDK
// accepts plain HTTP on loopback).
func newTaskRoleEndpoint(t *testing.T, keyID, secret, token string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": keyID, "SecretAccessKey": secret, "Token": token,
			"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}
