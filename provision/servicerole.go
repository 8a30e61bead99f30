package provision

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// ECS's service-linked role: ECS acts with it on the account's behalf, to
// attach each Fargate task's network interface in awsvpc mode; without it
// no task starts.
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html
const (
	ecsServiceName        = "ecs.amazonaws.com"
	ecsServiceLinkedRole  = "AWSServiceRoleForECS"
	ecsServiceLinkedLabel = "iam role " + ecsServiceLinkedRole + " (ECS's service-linked role)"
)

// ensureECSServiceLinkedRole creates ECS's service-linked role unless the
// account has it. ECS creates it itself when someone creates a cluster in
// the console or with a principal that may create it; an account whose
// first cluster is bootstrap's, made by the agent's role, may lack it, and
// then RunTask fails. An IAM role is the account's, not a region's, so
// this is done once whatever the region.
func ensureECSServiceLinkedRole(ctx context.Context, c *clients, r *BootstrapResult) error {
	_, err := c.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(ecsServiceLinkedRole)})
	switch {
	case err == nil:
		r.Found = append(r.Found, ecsServiceLinkedLabel)
		return nil
	case !isIAMNotFound(err):
		return fmt.Errorf("get role %s: %w", ecsServiceLinkedRole, err)
	}
	_, err = c.iam.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String(ecsServiceName)})
	switch {
	case err == nil:
		r.Created = append(r.Created, ecsServiceLinkedLabel)
	case isServiceLinkedRoleTaken(err):
		// Created since the GetRole: there now, which is all we need.
		r.Found = append(r.Found, ecsServiceLinkedLabel)
	default:
		return fmt.Errorf("create service-linked role for %s: %w", ecsServiceName, err)
	}
	return nil
}
