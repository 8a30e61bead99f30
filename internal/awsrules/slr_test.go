package awsrules_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// ecsSLRStatements allow what deploy/agent-bootstrap-policy.json allows:
// read ECS's service-linked role, and create it for ECS only.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/using-service-linked-roles.html#service-linked-role-permissions
var ecsSLRStatements = []string{
	`{"Sid":"Read","Effect":"Allow","Action":"iam:GetRole","Resource":["arn:aws:iam::*:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS","arn:aws:iam::*:role/AWSServiceRoleForECS"]}`,
	`{"Sid":"Create","Effect":"Allow","Action":"iam:CreateServiceLinkedRole","Resource":"arn:aws:iam::*:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS*",` +
		`"Condition":{"StringEquals":{"iam:AWSServiceName":"ecs.amazonaws.com"}}}`,
}

// deleteRoles deletes roles an earlier test of this process left, as the
// operator.
func deleteRoles(t *testing.T, c *iam.Client, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := c.DeleteRole(t.Context(), &iam.DeleteRoleInput{RoleName: aws.String(n)}); err != nil && !errors.As(err, new(*iamtypes.NoSuchEntityException)) {
			t.Fatalf("delete role %s: %v", n, err)
		}
	}
}

// TestCreateServiceLinkedRoleAsIAMDoes: kumo has no CreateServiceLinkedRole;
// the proxy creates the role as IAM would (its path, trusting the service),
// authorized by the role named in the request's service, with
// iam:AWSServiceName; a second create is IAM's "has been taken".
func TestCreateServiceLinkedRoleAsIAMDoes(t *testing.T) {
	ctx := t.Context()
	_, operator, tester := iamProxy(t, doc(ecsSLRStatements...))
	admin, c := iam.NewFromConfig(operator), iam.NewFromConfig(tester)
	deleteRoles(t, admin, "AWSServiceRoleForECS", "AWSServiceRoleForAutoScaling")

	// Missing, the role can only be named by its name, which the policy
	// allows to read.
	_, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("AWSServiceRoleForECS")})
	if !errors.As(err, new(*iamtypes.NoSuchEntityException)) {
		t.Fatalf("GetRole before it exists: %v, want NoSuchEntity", err)
	}
	out, err := c.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("ecs.amazonaws.com")})
	if err != nil {
		t.Fatalf("CreateServiceLinkedRole: %v", err)
	}
	wantARN := "arn:aws:iam::" + kumoAccount + ":role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
	if r := out.Role; aws.ToString(r.RoleName) != "AWSServiceRoleForECS" || aws.ToString(r.Path) != "/aws-service-role/ecs.amazonaws.com/" || aws.ToString(r.Arn) != wantARN {
		t.Errorf("role %s at %s (%s), want AWSServiceRoleForECS at /aws-service-role/ecs.amazonaws.com/ (%s)",
			aws.ToString(r.RoleName), aws.ToString(r.Path), aws.ToString(r.Arn), wantARN)
	}
	// Now it exists, IAM authorizes reading it by its ARN, path included.
	got, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("AWSServiceRoleForECS")})
	if err != nil {
		t.Fatalf("GetRole: %v", err)
	}
	trust, _ := url.QueryUnescape(aws.ToString(got.Role.AssumeRolePolicyDocument))
	if !strings.Contains(trust, `"Service":"ecs.amazonaws.com"`) || !strings.Contains(trust, "sts:AssumeRole") {
		t.Errorf("trust policy %s, want ECS alone", trust)
	}

	_, err = c.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("ecs.amazonaws.com")})
	wantRefused(t, err, http.StatusBadRequest, "InvalidInput",
		"Service role name AWSServiceRoleForECS has been taken in this account, please try a different suffix.")

	// Another service's role is not the policy's to create.
	_, err = c.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("autoscaling.amazonaws.com")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	if err != nil && !strings.Contains(err.Error(), "iam:CreateServiceLinkedRole on resource: arn:aws:iam::"+kumoAccount+":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling") {
		t.Errorf("denial %v does not name the role IAM would create", err)
	}
	if _, err := admin.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("AWSServiceRoleForAutoScaling")}); !errors.As(err, new(*iamtypes.NoSuchEntityException)) {
		t.Errorf("the refused role exists after all: %v", err)
	}
}

// TestKumoHasNoCreateServiceLinkedRole shows why the proxy serves it.
func TestKumoHasNoCreateServiceLinkedRole(t *testing.T) {
	_, err := iam.NewFromConfig(direct(testenv.KumoURL(t))).CreateServiceLinkedRole(t.Context(),
		&iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("elasticloadbalancing.amazonaws.com")})
	if err == nil {
		t.Fatal("kumo created a service-linked role: the proxy's rewrite may no longer be needed")
	}
}
