package provision_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

const ecsServiceLinkedRole = "AWSServiceRoleForECS"

// slrLabel is how Bootstrap reports ECS's service-linked role.
const slrLabel = "iam role " + ecsServiceLinkedRole + " (ECS's service-linked role)"

// deleteECSServiceLinkedRole deletes the role an earlier test of this
// process left in kumo, as the operator: the account starts without it.
func deleteECSServiceLinkedRole(t *testing.T, c *iam.Client) {
	t.Helper()
	_, err := c.DeleteRole(t.Context(), &iam.DeleteRoleInput{RoleName: aws.String(ecsServiceLinkedRole)})
	if err != nil && !errors.As(err, new(*iamtypes.NoSuchEntityException)) {
		t.Fatalf("delete %s: %v", ecsServiceLinkedRole, err)
	}
}

// TestBootstrapCreatesTheECSServiceLinkedRole: bootstrap, as the agent's
// role, creates ECS's service-linked role where the account lacks it,
// where IAM puts it and trusted by ECS alone; the next bootstrap finds it
// and asks for nothing.
func TestBootstrapCreatesTheECSServiceLinkedRole(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	deleteECSServiceLinkedRole(t, e.iam)
	o := provision.BootstrapOptions{StateBucket: "cloudpipe-state-" + e.name, Subnets: e.subnets, SecurityGroups: e.sgs}

	first, err := e.p.Bootstrap(ctx, testenv.Region, o)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if !slices.Contains(first.Created, slrLabel) {
		t.Errorf("first Bootstrap created %v, want %q", first.Created, slrLabel)
	}
	var services []string
	for _, in := range e.calls.Inputs("IAM.CreateServiceLinkedRole") {
		services = append(services, aws.ToString(in.(*iam.CreateServiceLinkedRoleInput).AWSServiceName))
	}
	// AWS Batch's too when an earlier test has not made it.
	if services = slices.DeleteFunc(services, func(s string) bool { return s == "batch.amazonaws.com" }); !slices.Equal(services, []string{"ecs.amazonaws.com"}) {
		t.Errorf("CreateServiceLinkedRole calls for %v, want one for ecs.amazonaws.com", services)
	}
	role, err := e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(ecsServiceLinkedRole)})
	if err != nil {
		t.Fatalf("the role is not there: %v", err)
	}
	trust, _ := url.QueryUnescape(aws.ToString(role.Role.AssumeRolePolicyDocument))
	if aws.ToString(role.Role.Path) != "/aws-service-role/ecs.amazonaws.com/" || !strings.Contains(trust, `"ecs.amazonaws.com"`) {
		t.Errorf("role at path %q trusting %s; want /aws-service-role/ecs.amazonaws.com/, ECS", aws.ToString(role.Role.Path), trust)
	}

	e.calls.Reset()
	second, err := e.p.Bootstrap(ctx, testenv.Region, o)
	if err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	if !slices.Contains(second.Found, slrLabel) || slices.Contains(second.Created, slrLabel) {
		t.Errorf("second Bootstrap created %v, found %v; want %q found", second.Created, second.Found, slrLabel)
	}
	if n := e.calls.Ops()["IAM.CreateServiceLinkedRole"]; n != 0 {
		t.Errorf("second Bootstrap called CreateServiceLinkedRole %d times, want 0", n)
	}
}

// TestBootstrapFindsTheServiceLinkedRoleCreatedMeanwhile: the role
// appears between bootstrap's GetRole and its CreateServiceLinkedRole (ECS
// made it for another cluster, or another bootstrap did); IAM answers that
// the name is taken, and bootstrap reports the role found.
func TestBootstrapFindsTheServiceLinkedRoleCreatedMeanwhile(t *testing.T) {
	operator := iam.NewFromConfig(testenv.Kumo(t))
	deleteECSServiceLinkedRole(t, operator)
	createFirst := func(cfg *aws.Config) {
		cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.CreatedMeanwhile",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if awsmiddleware.GetOperationName(ctx) == "CreateServiceLinkedRole" {
						if _, err := operator.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("ecs.amazonaws.com")}); err != nil {
							return middleware.InitializeOutput{}, middleware.Metadata{}, err
						}
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	}
	e := newEnv(t, createFirst)
	res, err := e.p.Bootstrap(t.Context(), testenv.Region, provision.BootstrapOptions{StateBucket: "cloudpipe-state-" + e.name, Subnets: e.subnets, SecurityGroups: e.sgs})
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if !slices.Contains(res.Found, slrLabel) || slices.Contains(res.Created, slrLabel) {
		t.Errorf("Bootstrap created %v, found %v; want %q found", res.Created, res.Found, slrLabel)
	}
	if n := e.calls.Ops()["IAM.CreateServiceLinkedRole"]; n != 1 {
		t.Errorf("%d CreateServiceLinkedRole calls, want 1 (refused: the name is taken)", n)
	}
}

// batchAccountLabels are how Bootstrap reports what it makes once per
// account for AWS Batch, in order.
var batchAccountLabels = []string{
	"iam role AWSServiceRoleForBatch (AWS Batch's service-linked role)",
	"iam role " + provision.BatchInstanceRole,
	"iam instance profile " + provision.BatchInstanceRole,
}

// deleteBatchAccountRoles deletes, as the operator, what an earlier
// bootstrap of this process made for AWS Batch in the account: Batch's
// service-linked role and the instance role and profile.
func deleteBatchAccountRoles(t *testing.T, c *iam.Client) {
	t.Helper()
	ctx := t.Context()
	name := aws.String(provision.BatchInstanceRole)
	notFound := func(err error) bool { return err == nil || errors.As(err, new(*iamtypes.NoSuchEntityException)) }
	if _, err := c.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: name, RoleName: name}); !notFound(err) {
		t.Fatalf("remove the instance role from its profile: %v", err)
	}
	if _, err := c.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: name,
		PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role")}); !notFound(err) {
		t.Fatalf("detach the instance role's policy: %v", err)
	}
	if _, err := c.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: name}); !notFound(err) {
		t.Fatalf("delete the instance profile: %v", err)
	}
	for _, role := range []string{provision.BatchInstanceRole, "AWSServiceRoleForBatch"} {
		if _, err := c.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(role)}); !notFound(err) {
			t.Fatalf("delete role %s: %v", role, err)
		}
	}
}
