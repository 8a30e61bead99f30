package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// TestCustomerManagedKeys: a stage whose input bucket is encrypted by
// default with a customer managed key (named by alias), whose output bucket
// with another (named by key id), whose task credentials secret with a
// third, and whose workflow lists a fourth in kms_key_arns, for an input
// put with that key. The agent grants each key where it is needed, so the
// runner, as its task role, reads both inputs and writes the results in
// parts, and ECS (the local ECS) starts the task with its execution role.
// Then each grant is taken out of the role's policy in turn, and the step
// that needs it fails as it fails in AWS, IAM naming that key.
func TestCustomerManagedKeys(t *testing.T) {
	ctx := t.Context()
	operator := testenv.Kumo(t)
	name := testenv.UniqueName(t)
	keys := newKeys(t, operator, name, "in", "out", "creds", "extra")
	admin := s3.NewFromConfig(operator, testenv.S3PathStyle)
	for bucket, key := range map[string]string{name + "-in": "alias/" + name + "-in", name + "-out": keyID(keys["out"])} {
		if _, err := admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(bucket),
			ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
				ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(key)}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	creds, err := secretsmanager.NewFromConfig(operator).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name + "-creds"), KmsKeyId: aws.String(keys["creds"]),
		SecretString: aws.String(`{"AWS_ACCESS_KEY_ID":"AKIAEXAMPLEEXAMPLE12","AWS_SECRET_ACCESS_KEY":"not-a-real-secret-key"}`)})
	if err != nil {
		t.Fatal(err)
	}

	// ECS in front of the AWS rules: the agent registers the task
	// definition through it, and it starts tasks after asking IAM about
	// their execution role.
	rules := testenv.AWSRules(t)
	var startedMu sync.Mutex
	var started []localecs.TaskSpec
	ecsProxy, err := localecs.Listen(localecs.Options{
		Addr: "127.0.0.1:0", Upstream: rules.URL(), StopTimeout: 2 * time.Second, Authorize: rules.Authorize,
		Start: func(ctx context.Context, spec localecs.TaskSpec) (*exec.Cmd, error) {
			startedMu.Lock()
			started = append(started, spec)
			startedMu.Unlock()
			return exec.CommandContext(ctx, "true"), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ecsProxy.Close() })
	viaECS := operator.Copy()
	viaECS.BaseEndpoint = aws.String(ecsProxy.URL())
	tasks := ecs.NewFromConfig(viaECS)
	if _, err := tasks.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String("cloudpipe")}); err != nil {
		t.Fatal(err)
	}

	s := newStage(t, stageOptions{name: name, agentEndpoint: ecsProxy.URL(), denials: true, spec: func(spec *provision.StageSpec) {
		spec.TaskCredentialsSecret = aws.ToString(creds.ARN)
		spec.KMSKeyARNs = []string{keys["extra"]}
	}})
	s.cfg.PartSize = 5 << 20 // the smallest S3 part: a 6 MiB result goes up in two
	big := strings.Repeat("0123456789abcde\n", 6<<20/16)
	input := func(key string, own bool) {
		t.Helper()
		in := &s3.PutObjectInput{Bucket: &s.in, Key: &key, Body: strings.NewReader(big)}
		if own { // a key of its own, not the bucket's
			in.ServerSideEncryption, in.SSEKMSKeyId = s3types.ServerSideEncryptionAwsKms, aws.String(keys["extra"])
		}
		if _, err := admin.PutObject(ctx, in); err != nil {
			t.Fatal(err)
		}
		s.send(key)
	}
	runTask := func() ecstypes.Task {
		t.Helper()
		out, err := tasks.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("cloudpipe"), TaskDefinition: aws.String(s.res.TaskDefinitionARN)})
		if err != nil || len(out.Tasks) != 1 {
			t.Fatalf("RunTask: %v %v", out, err)
		}
		return out.Tasks[0]
	}
	taskRole, execRole := roleName(s.res.TaskRoleARN), roleName(s.res.ExecutionRoleARN)

	// Everything granted: both inputs read, both results written in parts.
	input("data/a.txt", false)
	input("data/own-key.txt", true)
	s.run()
	for _, key := range []string{"data/Result-copy-a.txt", "data/Result-copy-own-key.txt"} {
		if got, ok := s.get(s.out, key); !ok || got != big {
			t.Errorf("result %s: %d bytes (exists %v), want the input's %d", key, len(got), ok, len(big))
		}
	}
	if d := testenv.AWSRules(t).Report().Principals[taskRole].Denied; len(d) > 0 {
		t.Fatalf("the task role was denied %q with every key granted", d)
	}
	if task := runTask(); string(task.StopCode) == localecs.StopTaskFailedToStart {
		t.Fatalf("the task did not start with every key granted: %s", aws.ToString(task.StoppedReason))
	}
	startedMu.Lock()
	n := len(started)
	gotKey := n == 1 && started[0].Environment[contract.EnvAlgorithmAccessKeyID] == "AKIAEXAMPLEEXAMPLE12"
	startedMu.Unlock()
	if !gotKey {
		t.Fatalf("%d tasks started, want 1 with the secret's access key in its environment", n)
	}

	// Each grant taken out in turn.
	tests := []struct {
		name, role, sid, key string // the grant: the role's statement, and the key it loses ("" for the whole statement)
		input                string // the file the runner fails on ("" for a task start)
		own                  bool
		denial               string // what IAM refused, as the rules report it
	}{
		{"read the input", taskRole, "DecryptData", keys["in"], "m/read.txt", false, "kms:Decrypt on " + keys["in"] + " (S3.GetObject)"},
		{"write the result", taskRole, "EncryptResults", "", "m/write.txt", false, "kms:GenerateDataKey on " + keys["out"] + " (S3.PostObject)"},
		{"upload the result's parts", taskRole, "DecryptData", keys["out"], "m/parts.txt", false, "kms:Decrypt on " + keys["out"] + " (S3.PutObject)"},
		{"read an input under the workflow's key", taskRole, "WorkflowKeys", "", "m/own-key.txt", true, "kms:Decrypt on " + keys["extra"] + " (S3.GetObject)"},
		{"start the task", execRole, "SecretKeys", "", "", false, "kms:Decrypt on " + keys["creds"] + " ((service) secretsmanager:GetSecretValue)"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			restore := withoutGrant(t, operator, tt.role, tt.sid, tt.key)
			defer restore()
			before := len(testenv.AWSRules(t).Report().Principals[tt.role].Denied)
			if tt.input == "" {
				task := runTask()
				reason := aws.ToString(task.StoppedReason)
				if string(task.StopCode) != localecs.StopTaskFailedToStart ||
					!strings.Contains(reason, "unable to retrieve secret from asm") || !strings.Contains(reason, "AccessDeniedException: Access to KMS is not allowed") {
					t.Errorf("task stop code %q, reason %q; want TaskFailedToStart, ECS saying Access to KMS is not allowed", task.StopCode, reason)
				}
			} else {
				input(tt.input, tt.own)
				s.run()
				result := strings.Replace(tt.input, "m/", "m/Result-copy-", 1)
				if _, ok := s.get(s.out, result); ok {
					t.Errorf("result %s was written without the grant", result)
				}
			}
			denied := testenv.AWSRules(t).Report().Principals[tt.role].Denied[before:]
			if !slices.Contains(denied, tt.denial) {
				t.Errorf("IAM denied %s %q, want %q", tt.role, denied, tt.denial)
			}
		})
	}
}

// newKeys creates a customer managed key for each name, with the alias
// alias/<prefix>-<name>, and returns their ARNs by name.
func newKeys(t *testing.T, operator aws.Config, prefix string, names ...string) map[string]string {
	t.Helper()
	c := kms.NewFromConfig(operator)
	out := map[string]string{}
	for _, n := range names {
		k, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String(prefix + " " + n)})
		if err != nil {
			t.Fatal(err)
		}
		out[n] = aws.ToString(k.KeyMetadata.Arn)
		if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/" + prefix + "-" + n), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func keyID(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

func roleName(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

// withoutGrant takes key out of the statement sid of role's inline policy
// (the whole statement when key is ""), as the operator, and returns what
// puts the policy back.
func withoutGrant(t *testing.T, operator aws.Config, role, sid, key string) (restore func()) {
	t.Helper()
	ctx := t.Context()
	c := iam.NewFromConfig(operator)
	out, err := c.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &role, PolicyName: aws.String("cloudpipe")})
	if err != nil {
		t.Fatal(err)
	}
	original := aws.ToString(out.PolicyDocument)
	var doc struct {
		Version   string
		Statement []map[string]any
	}
	if err := json.Unmarshal([]byte(original), &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	doc.Statement = slices.DeleteFunc(doc.Statement, func(s map[string]any) bool {
		if s["Sid"] != sid {
			return false
		}
		found = true
		if key == "" {
			return true
		}
		var kept []any
		for _, r := range asList(s["Resource"]) {
			if r != key {
				kept = append(kept, r)
			}
		}
		if len(kept) == len(asList(s["Resource"])) {
			t.Fatalf("statement %s of %s does not grant %s: %v", sid, role, key, s["Resource"])
		}
		s["Resource"] = kept
		return len(kept) == 0
	})
	if !found {
		t.Fatalf("role %s has no statement %s:\n%s", role, sid, original)
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(doc); err != nil {
		t.Fatal(err)
	}
	put := func(policy string) {
		if _, err := c.PutRolePolicy(context.WithoutCancel(ctx), &iam.PutRolePolicyInput{RoleName: &role, PolicyName: aws.String("cloudpipe"), PolicyDocument: &policy}); err != nil {
			t.Fatal(err)
		}
	}
	put(b.String())
	return func() { put(original) }
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}
