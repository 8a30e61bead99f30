package provision_test

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// statement is the part of an IAM policy statement the tests look at.
type statement struct {
	Sid       string
	Effect    string
	Action    any
	Resource  any
	Principal map[string]any
	Condition map[string]map[string]any
}

func list(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, s := range v {
			out = append(out, s.(string))
		}
		return out
	}
	return nil
}

func parseStatements(t *testing.T, doc string) []statement {
	t.Helper()
	if u, err := url.QueryUnescape(doc); err == nil {
		doc = u
	}
	var p struct{ Statement []statement }
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("policy %s: %v", doc, err)
	}
	return p.Statement
}

func TestRolesTaggedAndScopedToTheStage(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	name := provision.ResourceName(spec.Workflow, spec.Stage)
	ecsARN := "arn:aws:ecs:us-east-1:" + kumoAccount + ":"

	tests := []struct {
		role, arn, service string
		resources          []string // exactly these, and nothing else
	}{
		{name + "-lambda", res.LambdaRoleARN, "lambda.amazonaws.com", []string{
			res.QueueARN, res.DLQARN,
			ecsARN + "task-definition/" + name + ":*",
			"*", // ecs:ListTasks only, on the agent's cluster: checked below
			res.ExecutionRoleARN, res.TaskRoleARN,
			"arn:aws:logs:us-east-1:" + kumoAccount + ":log-group:/aws/lambda/" + name + ":*",
		}},
		{name + "-exec", res.ExecutionRoleARN, "ecs-tasks.amazonaws.com", []string{
			"arn:aws:logs:us-east-1:" + kumoAccount + ":log-group:/cloudpipe/" + spec.Workflow + ":log-stream:stage-0/*",
			testSecretARN, testSecretARN + "-??????", testCredsARN, testCredsARN + "-??????",
			"arn:aws:ecr:us-east-1:123456789012:repository/change123",
			"*", // ecr:GetAuthorizationToken only, checked below
		}},
		{name + "-task", res.TaskRoleARN, "ecs-tasks.amazonaws.com", []string{
			"arn:aws:s3:::" + spec.InputBucket, // s3:ListBucket: a missing input is NoSuchKey, not AccessDenied
			"arn:aws:s3:::" + spec.InputBucket + "/*",
			"arn:aws:s3:::" + spec.OutputBucket + "/*",
			"arn:aws:s3:::" + e.opts.StateBucket + "/runs/" + spec.Workflow + "/*",
			res.QueueARN,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			role, err := e.iam.GetRole(t.Context(), &iam.GetRoleInput{RoleName: &tt.role})
			if err != nil {
				t.Fatal(err)
			}
			if got := aws.ToString(role.Role.Arn); got != tt.arn || got == "" {
				t.Errorf("recorded ARN %s, IAM says %s", tt.arn, got)
			}
			tags := map[string]string{}
			for _, tag := range role.Role.Tags {
				tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			if want := map[string]string{provision.TagManaged: "true", provision.TagWorkflow: spec.Workflow, provision.TagStage: "0"}; !maps.Equal(tags, want) {
				t.Errorf("tags = %v, want %v", tags, want)
			}
			trust := parseStatements(t, aws.ToString(role.Role.AssumeRolePolicyDocument))
			if len(trust) != 1 || !slices.Equal(list(trust[0].Principal["Service"]), []string{tt.service}) {
				t.Errorf("trust policy %+v, want only %s", trust, tt.service)
			}
			// Only the task role's trust names the account: only there does
			// AWS document that the service passes the keys.
			if len(trust) == 1 && strings.HasSuffix(tt.role, "-task") {
				if got := list(trust[0].Condition["StringEquals"]["aws:SourceAccount"]); !slices.Equal(got, []string{kumoAccount}) {
					t.Errorf("task role trusts aws:SourceAccount %v, want %s", got, kumoAccount)
				}
				if got := list(trust[0].Condition["ArnLike"]["aws:SourceArn"]); !slices.Equal(got, []string{ecsARN + "*"}) {
					t.Errorf("task role trusts aws:SourceArn %v, want %s*", got, ecsARN)
				}
			} else if len(trust) == 1 && trust[0].Condition != nil {
				t.Errorf("%s trusts with conditions %v, which its service is not documented to send", tt.role, trust[0].Condition)
			}

			pol, err := e.iam.GetRolePolicy(t.Context(), &iam.GetRolePolicyInput{RoleName: &tt.role, PolicyName: aws.String("cloudpipe")})
			if err != nil {
				t.Fatal(err)
			}
			var resources []string
			for _, st := range parseStatements(t, aws.ToString(pol.PolicyDocument)) {
				if st.Effect != "Allow" {
					t.Errorf("statement %s: effect %s", st.Sid, st.Effect)
				}
				for _, r := range list(st.Resource) {
					if r == "*" && !onStarAllowed(st) {
						t.Errorf("statement %s grants %v on *: only ecr:GetAuthorizationToken, and ecs:ListTasks on one cluster, may", st.Sid, list(st.Action))
					}
					if r == "" {
						t.Errorf("statement %s has an empty resource", st.Sid)
					}
					resources = append(resources, r)
				}
				for _, a := range list(st.Action) {
					if a == "*" || a[len(a)-1] == '*' {
						t.Errorf("statement %s: wildcard action %s", st.Sid, a)
					}
				}
				if slices.Contains(list(st.Action), "ecs:RunTask") || slices.Contains(list(st.Action), "ecs:ListTasks") {
					if got := list(st.Condition["ArnEquals"]["ecs:cluster"]); !slices.Equal(got, []string{ecsARN + "cluster/" + e.opts.Cluster}) {
						t.Errorf("%v condition on cluster %v, want %s", list(st.Action), got, e.opts.Cluster)
					}
				}
			}
			slices.Sort(resources)
			want := slices.Sorted(slices.Values(tt.resources))
			if !slices.Equal(resources, want) {
				t.Errorf("policy resources\n%v\nwant exactly\n%v", resources, want)
			}
		})
	}
}

func TestRolePolicyRewrittenOnlyWhenItDiffers(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	role := provision.ResourceName(spec.Workflow, spec.Stage) + "-task"

	// Someone widens the task role by hand: the next pass puts it back.
	_, err := e.iam.PutRolePolicy(t.Context(), &iam.PutRolePolicyInput{
		RoleName: &role, PolicyName: aws.String("cloudpipe"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	e.ensure(spec, res)
	if got, want := e.calls.WriteOps(), map[string]int{"IAM.PutRolePolicy": 1}; !maps.Equal(got, want) {
		t.Errorf("writes = %v, want %v", got, want)
	}
	pol, err := e.iam.GetRolePolicy(t.Context(), &iam.GetRolePolicyInput{RoleName: &role, PolicyName: aws.String("cloudpipe")})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range parseStatements(t, aws.ToString(pol.PolicyDocument)) {
		if slices.Contains(list(st.Resource), "*") {
			t.Errorf("hand-made statement survived: %+v", st)
		}
	}
}

// onStarAllowed reports whether a statement may grant on "*": what AWS
// authorizes only on "*" (ecr:GetAuthorizationToken; ecs:ListTasks without
// a container-instance filter), and ListTasks only with a cluster condition.
func onStarAllowed(st statement) bool {
	switch actions := list(st.Action); {
	case slices.Equal(actions, []string{"ecr:GetAuthorizationToken"}):
		return true
	case slices.Equal(actions, []string{"ecs:ListTasks"}):
		return len(list(st.Condition["ArnEquals"]["ecs:cluster"])) == 1
	}
	return false
}

// TestExecutionRoleReadsASecretNamedByItsPartialARN: a workflow may name a
// secret without the 6-character suffix of its ARN; IAM matches the full
// ARN, so the execution role's policy must match it with "-??????". The
// decision is IAM's, through the AWS-rules layer, on the role as provision
// made it.
func TestExecutionRoleReadsASecretNamedByItsPartialARN(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	secret, err := secretsmanager.NewFromConfig(e.cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(e.name + "-db"), SecretString: aws.String(`{"password":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	full := aws.ToString(secret.ARN)
	partial := full[:strings.LastIndex(full, "-")] // the ARN without its suffix
	if partial == full || !strings.HasSuffix(partial, e.name+"-db") {
		t.Fatalf("secret ARN %s has no suffix to drop", full)
	}
	spec := e.spec()
	spec.Secrets = map[string]string{"DB_PASSWORD": partial + ":password::"}
	spec.TaskCredentialsSecret = ""
	res := e.ensure(spec, provision.StageResources{})
	exec := res.ExecutionRoleARN[strings.LastIndex(res.ExecutionRoleARN, "/")+1:]
	if err := testenv.AWSRules(t).Authorize(ctx, exec, "secretsmanager:GetSecretValue", partial); err != nil {
		t.Errorf("the execution role may not read the secret named by its partial ARN: %v", err)
	}
}

// TestTaskRoleTrustOfAnOlderAgentUpdated: a task role an older agent made
// trusts ECS without naming the account; the next pass rewrites its trust
// policy (iam:UpdateAssumeRolePolicy, which the agent's policy allows on its
// own roles) and nothing else.
func TestTaskRoleTrustOfAnOlderAgentUpdated(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	role := provision.ResourceName(spec.Workflow, spec.Stage) + "-task"
	old := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := e.iam.UpdateAssumeRolePolicy(t.Context(), &iam.UpdateAssumeRolePolicyInput{RoleName: &role, PolicyDocument: aws.String(old)}); err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	e.ensure(spec, res)
	if got, want := e.calls.WriteOps(), map[string]int{"IAM.UpdateAssumeRolePolicy": 1}; !maps.Equal(got, want) {
		t.Errorf("writes = %v, want %v", got, want)
	}
	if in, ok := e.calls.LastInput("IAM.UpdateAssumeRolePolicy").(*iam.UpdateAssumeRolePolicyInput); !ok || aws.ToString(in.RoleName) != role {
		t.Errorf("UpdateAssumeRolePolicy of %v, want %s", in, role)
	}
	got, err := e.iam.GetRole(t.Context(), &iam.GetRoleInput{RoleName: &role})
	if err != nil {
		t.Fatal(err)
	}
	trust := parseStatements(t, aws.ToString(got.Role.AssumeRolePolicyDocument))
	if len(trust) != 1 || !slices.Equal(list(trust[0].Condition["StringEquals"]["aws:SourceAccount"]), []string{kumoAccount}) {
		t.Errorf("trust policy after the pass %+v, want aws:SourceAccount %s", trust, kumoAccount)
	}
}
