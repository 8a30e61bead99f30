package provision

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// serviceLinkedRole is a service's service-linked role: the service acts
// with it on the account's behalf.
type serviceLinkedRole struct{ service, name, what string }

// ECS's: to attach each Fargate task's network interface in awsvpc mode;
// without it no task starts.
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html
var ecsServiceLinkedRole = serviceLinkedRole{"ecs.amazonaws.com", "AWSServiceRoleForECS", "ECS"}

// AWS Batch's: a compute environment created without a serviceRole (as
// cloudpipe's are) uses it to launch and end instances.
// https://docs.aws.amazon.com/batch/latest/userguide/using-service-linked-roles.html
var batchServiceLinkedRole = serviceLinkedRole{"batch.amazonaws.com", "AWSServiceRoleForBatch", "AWS Batch"}

func (s serviceLinkedRole) label() string {
	return "iam role " + s.name + " (" + s.what + "'s service-linked role)"
}

// ensureServiceLinkedRole creates the service-linked role s unless the
// account has it. The service creates it itself when someone uses it in
// the console or with a principal that may create it; an account whose
// first cluster or compute environment is the agent's may lack it, and
// then tasks and instances do not start. An IAM role is the account's, not
// a region's, so this is done once whatever the region.
func ensureServiceLinkedRole(ctx context.Context, c *clients, s serviceLinkedRole, r *BootstrapResult) error {
	_, err := c.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(s.name)})
	switch {
	case err == nil:
		r.Found = append(r.Found, s.label())
		return nil
	case !isIAMNotFound(err):
		return fmt.Errorf("get role %s: %w", s.name, err)
	}
	_, err = c.iam.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String(s.service)})
	switch {
	case err == nil:
		r.Created = append(r.Created, s.label())
	case isServiceLinkedRoleTaken(err):
		// Created since the GetRole: there now, which is all we need.
		r.Found = append(r.Found, s.label())
	default:
		return fmt.Errorf("create service-linked role for %s: %w", s.service, err)
	}
	return nil
}
