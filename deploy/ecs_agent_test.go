package deploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// agentDeployment is the shape of deploy/ecs-agent.json: the request bodies
// of `aws ecs register-task-definition` and `aws ecs create-service`, each
// usable with --cli-input-json after the placeholders are filled in.
type agentDeployment struct {
	TaskDefinition ecs.RegisterTaskDefinitionInput
	Service        ecs.CreateServiceInput
}

// placeholderRE matches the ${NAME} placeholders an operator fills in (with
// envsubst or by hand; docs/operations.md says with what).
var placeholderRE = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)

// testValues fills every placeholder of ecs-agent.json for the tests; a
// placeholder missing here fails TestDeployTaskDefinition, so a new one is
// noticed (and documented).
func testValues(account string) map[string]string {
	return map[string]string{
		"ACCOUNT_ID":              account,
		"REGION":                  testenv.Region,
		"CLOUDPIPE_REPO":          "https://github.com/example/pipelines.git",
		"GITHUB_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:" + account + ":secret:cloudpipe/github-token-AbCdEf",
		"WEBHOOK_SECRET_ARN":      "arn:aws:secretsmanager:us-east-1:" + account + ":secret:cloudpipe/webhook-secret-GhIjKl",
		"SUBNET_ID":               "subnet-0123456789abcdef0",
		"SECURITY_GROUP_ID":       "sg-0123456789abcdef0",
		"TARGET_GROUP_ARN":        "arn:aws:elasticloadbalancing:us-east-1:" + account + ":targetgroup/cloudpipe-agent/0123456789abcdef",
	}
}

const testAccount = "000000000000" // kumo's account

// loadDeployment reads ecs-agent.json, fills its placeholders from values and
// decodes it strictly into the SDK's request types.
func loadDeployment(t *testing.T, values map[string]string) agentDeployment {
	t.Helper()
	data, err := os.ReadFile("ecs-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	var unknown []string
	filled := placeholderRE.ReplaceAllStringFunc(string(data), func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		v, ok := values[name]
		if !ok {
			unknown = append(unknown, name)
		}
		return v
	})
	if len(unknown) > 0 {
		t.Fatalf("ecs-agent.json has placeholders the tests (and maybe docs/operations.md) do not know: %v", unknown)
	}
	if strings.Contains(filled, "${") {
		t.Fatalf("ecs-agent.json has a malformed placeholder: %s", filled[strings.Index(filled, "${"):][:20])
	}
	var d agentDeployment
	if err := decodeAPIJSON([]byte(filled), &d); err != nil {
		t.Fatalf("ecs-agent.json: %v", err)
	}
	return d
}

func TestDeployTaskDefinition(t *testing.T) {
	d := loadDeployment(t, testValues(testAccount))
	td, svc := d.TaskDefinition, d.Service

	check := func(what string, got, want any) {
		t.Helper()
		if !equalJSONish(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("family", aws.ToString(td.Family), "cloudpipe-agent")
	check("requiresCompatibilities", td.RequiresCompatibilities, []ecstypes.Compatibility{ecstypes.CompatibilityFargate})
	check("networkMode", td.NetworkMode, ecstypes.NetworkModeAwsvpc)
	check("cpu", aws.ToString(td.Cpu), "256")
	check("memory", aws.ToString(td.Memory), "512")
	if len(td.ContainerDefinitions) != 1 {
		t.Fatalf("want one container, got %d", len(td.ContainerDefinitions))
	}
	c := td.ContainerDefinitions[0]
	check("container name", aws.ToString(c.Name), "agent")
	check("image", aws.ToString(c.Image), "ghcr.io/cloudpipe/agent:latest")
	check("command", c.Command, []string{"run"})
	check("essential", aws.ToBool(c.Essential), true)
	if len(c.EntryPoint) > 0 {
		t.Errorf("entryPoint %v overrides the image's /agent", c.EntryPoint)
	}
	env := map[string]string{}
	for _, kv := range c.Environment {
		env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
	}
	for _, name := range []string{"CLOUDPIPE_REPO", "CLOUDPIPE_BRANCH", "CLOUDPIPE_STATE_BUCKET"} {
		if env[name] == "" {
			t.Errorf("environment lacks %s", name)
		}
	}
	if img := env["CLOUDPIPE_RUNNER_IMAGE"]; img != "" && img != aws.ToString(c.Image) {
		t.Errorf("CLOUDPIPE_RUNNER_IMAGE %s differs from the agent's image %s: stage tasks would install another agent version", img, aws.ToString(c.Image))
	}
	if len(c.PortMappings) != 1 || aws.ToInt32(c.PortMappings[0].ContainerPort) != 8080 {
		t.Errorf("portMappings = %+v, want the agent's --listen port 8080", c.PortMappings)
	}
	if c.HealthCheck != nil {
		t.Errorf("healthCheck set: the distroless image has no shell or curl, and the agent has no healthcheck command; health is the target group's check")
	}
	if c.StopTimeout != nil && aws.ToInt32(c.StopTimeout) > 120 {
		t.Errorf("stopTimeout %d: Fargate allows at most 120", aws.ToInt32(c.StopTimeout))
	}
	lc := c.LogConfiguration
	if lc == nil || lc.LogDriver != ecstypes.LogDriverAwslogs {
		t.Fatalf("logConfiguration = %+v, want awslogs", lc)
	}
	group := lc.Options["awslogs-group"]
	if group == "" || strings.HasPrefix(group, "/cloudpipe/") {
		// /cloudpipe/<workflow> are the workflows' groups: a workflow
		// named like the agent's group would collide with it.
		t.Errorf("awslogs-group %q: want a group outside /cloudpipe/", group)
	}
	if lc.Options["awslogs-region"] != testenv.Region || lc.Options["awslogs-stream-prefix"] == "" {
		t.Errorf("awslogs options %v: want awslogs-region and awslogs-stream-prefix", lc.Options)
	}

	check("service taskDefinition", aws.ToString(svc.TaskDefinition), aws.ToString(td.Family))
	check("service cluster", aws.ToString(svc.Cluster), clusterName)
	check("service launchType", svc.LaunchType, ecstypes.LaunchTypeFargate)
	check("service desiredCount", aws.ToInt32(svc.DesiredCount), int32(1))
	dc := svc.DeploymentConfiguration
	if dc == nil || aws.ToInt32(dc.MinimumHealthyPercent) != 0 || aws.ToInt32(dc.MaximumPercent) != 100 {
		// 100% max with one task: the old agent stops before the new one
		// starts, so two agents never reconcile at once.
		t.Errorf("deploymentConfiguration = %+v, want minimumHealthyPercent 0 and maximumPercent 100", dc)
	}
	nc := svc.NetworkConfiguration
	if nc == nil || nc.AwsvpcConfiguration == nil || len(nc.AwsvpcConfiguration.Subnets) == 0 || len(nc.AwsvpcConfiguration.SecurityGroups) == 0 {
		t.Errorf("networkConfiguration = %+v, want awsvpc subnets and security groups", nc)
	}
	for _, lb := range svc.LoadBalancers {
		if aws.ToString(lb.ContainerName) != aws.ToString(c.Name) || aws.ToInt32(lb.ContainerPort) != 8080 {
			t.Errorf("load balancer %+v does not point at container %s port 8080", lb, aws.ToString(c.Name))
		}
	}

	// Register both against the emulator. The SDK validates required
	// members on the way (a secret without valueFrom, a container without
	// a name would fail here); kumo accepts the rest without checking it.
	ctx := t.Context()
	client := ecs.NewFromConfig(testenv.Kumo(t))
	// kumo is shared by the package's tests: a cluster of this test's own,
	// so TestDeployLifecycle's bootstrap still finds "cloudpipe" missing.
	name := testenv.UniqueName(t)
	svc.Cluster, svc.ServiceName = aws.String(name), aws.String(name)
	if _, err := client.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: svc.Cluster}); err != nil {
		t.Fatal(err)
	}
	out, err := client.RegisterTaskDefinition(ctx, &td)
	if err != nil {
		t.Fatalf("register task definition: %v", err)
	}
	if aws.ToString(out.TaskDefinition.Family) != "cloudpipe-agent" || out.TaskDefinition.Revision < 1 {
		t.Errorf("registered %+v", out.TaskDefinition)
	}
	if _, err := client.CreateService(ctx, &svc); err != nil {
		t.Fatalf("create service: %v", err)
	}
}

// equalJSONish compares values of the simple types the checks above use.
func equalJSONish(got, want any) bool {
	switch w := want.(type) {
	case []string:
		g, ok := got.([]string)
		return ok && slices.Equal(g, w)
	case []ecstypes.Compatibility:
		g, ok := got.([]ecstypes.Compatibility)
		return ok && slices.Equal(g, w)
	}
	return got == want
}

// credentialWords mark an environment variable name as a credential; the
// workflow validator uses the same list for workflow variables.
var credentialWords = []string{"PASSWORD", "PASSWD", "TOKEN", "SECRET", "API_KEY", "APIKEY", "PRIVATE_KEY", "AWS_ACCESS_KEY_ID"}

// secretLooking matches values that are credentials whatever their name:
// GitHub tokens, AWS access key IDs, URLs with a password.
var secretLooking = regexp.MustCompile(`(^|[^A-Za-z0-9])(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|(AKIA|ASIA)[A-Z0-9]{16})|://[^/@\s]+:[^/@\s]+@`)

func TestDeploySecretsByReference(t *testing.T) {
	values := testValues(testAccount)
	d := loadDeployment(t, values)
	c := d.TaskDefinition.ContainerDefinitions[0]

	for _, kv := range c.Environment {
		name, value := aws.ToString(kv.Name), aws.ToString(kv.Value)
		for _, w := range credentialWords {
			if strings.Contains(strings.ToUpper(name), w) {
				t.Errorf("environment %s looks like a credential: map it under secrets by valueFrom", name)
			}
		}
		if secretLooking.MatchString(value) {
			t.Errorf("environment %s holds a credential-looking value", name)
		}
	}

	want := []string{"CLOUDPIPE_GITHUB_TOKEN", "CLOUDPIPE_WEBHOOK_SECRET"}
	var got []string
	loadPolicy(t, "agent-execution-policy.json")
	for _, s := range c.Secrets {
		name, from := aws.ToString(s.Name), aws.ToString(s.ValueFrom)
		got = append(got, name)
		if !strings.HasPrefix(from, "arn:aws:secretsmanager:") || strings.Count(from, ":") < 6 {
			t.Errorf("secret %s valueFrom %q is not a Secrets Manager ARN", name, from)
		}
		// ECS reads secrets with the execution role when the task starts.
		r := authzRequest{Op: "ECS task start", Action: "secretsmanager:GetSecretValue", Resource: from}
		if !evaluate(t, r, "agent-execution-policy.json").Allowed {
			t.Errorf("agent-execution-policy.json does not let ECS read secret %s (%s)", name, from)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("secrets = %v, want %v (the two the agent reads from its environment)", got, want)
	}

	group := c.LogConfiguration.Options["awslogs-group"]
	logs := "arn:aws:logs:" + testenv.Region + ":" + testAccount + ":log-group:" + group + ":log-stream:agent/agent/0123"
	for _, action := range []string{"logs:CreateLogStream", "logs:PutLogEvents"} {
		if !evaluate(t, authzRequest{Action: action, Resource: logs}, "agent-execution-policy.json").Allowed {
			t.Errorf("agent-execution-policy.json does not allow %s on %s", action, logs)
		}
	}

	// The task role is the one agent-iam-policy.json is for; the execution
	// role is another, so the agent's own code cannot read the secrets'
	// history or other secrets through ECS's permissions.
	if aws.ToString(d.TaskDefinition.TaskRoleArn) == aws.ToString(d.TaskDefinition.ExecutionRoleArn) {
		t.Errorf("taskRoleArn and executionRoleArn are the same role")
	}
}

// TestDeployEnvMatchesCLI checks that every CLOUDPIPE_ variable the task sets
// is one `agent run` reads, as docs/cli.md (generated from the code by
// cmd/agent's TestDocsCLI) documents it.
func TestDeployEnvMatchesCLI(t *testing.T) {
	cli, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	run := string(cli)
	start := strings.Index(run, "Usage: agent run ")
	if start < 0 {
		t.Fatal("docs/cli.md has no `agent run` help")
	}
	run = run[start:]
	if end := strings.Index(run, "```"); end >= 0 {
		run = run[:end]
	}
	d := loadDeployment(t, testValues(testAccount))
	c := d.TaskDefinition.ContainerDefinitions[0]
	var names []string
	for _, kv := range c.Environment {
		names = append(names, aws.ToString(kv.Name))
	}
	for _, s := range c.Secrets {
		names = append(names, aws.ToString(s.Name))
	}
	for _, name := range names {
		if strings.HasPrefix(name, "CLOUDPIPE_") && !strings.Contains(run, name) {
			t.Errorf("ecs-agent.json sets %s, which `agent run --help` does not mention: a typo, or a setting run ignores", name)
		}
	}
}

// TestDeployDocsNamePlaceholders checks that docs/operations.md says how to
// fill each placeholder of ecs-agent.json.
func TestDeployDocsNamePlaceholders(t *testing.T) {
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("ecs-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range placeholderRE.FindAllStringSubmatch(string(data), -1) {
		if !strings.Contains(string(ops), m[1]) {
			t.Errorf("docs/operations.md does not say what to put in ${%s}", m[1])
		}
	}
}
