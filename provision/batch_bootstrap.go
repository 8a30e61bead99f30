package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// ecsInstancePolicy is the AWS managed policy of ECS container instances:
// register with ECS, pull from ECR, write logs. Batch's compute
// environments need an instance role holding it ("ecsInstanceRole").
// https://docs.aws.amazon.com/batch/latest/userguide/instance_IAM_role.html
const ecsInstancePolicy = "policy/service-role/AmazonEC2ContainerServiceforEC2Role"

// ensureBatchInstanceRole makes the role and instance profile
// BatchInstanceRole that every compute environment's instances run with:
// the role trusts EC2 and holds ecsInstancePolicy; the profile of the same
// name holds the role. Both are the account's, tagged cloudpipe:managed
// (no workflow: every stage on AWS Batch shares them). Attaching a policy
// already attached and adding nothing to a profile that holds the role are
// no-ops, so it is safe to repeat.
func ensureBatchInstanceRole(ctx context.Context, c *clients, r *BootstrapResult) error {
	name := BatchInstanceRole
	tags := map[string]string{TagManaged: "true"}
	role, err := findRole(ctx, c, name)
	switch {
	case errors.Is(err, ErrNotFound):
		_, err := c.iam.CreateRole(ctx, &iam.CreateRoleInput{
			RoleName:                 aws.String(name),
			AssumeRolePolicyDocument: aws.String(trustPolicy("ec2.amazonaws.com").String()),
			Description:              aws.String("cloudpipe: EC2 instances of AWS Batch compute environments"),
			Tags:                     iamTags(tags),
		})
		if err != nil && !hasCode(err, "EntityAlreadyExists") {
			return fmt.Errorf("create role %s: %w", name, err)
		}
		r.Created = append(r.Created, "iam role "+name)
	case err != nil:
		return err
	case iamTagMap(role.Tags)[TagManaged] != "true":
		return &NotOwnedError{Kind: "iam role", Name: name}
	default:
		r.Found = append(r.Found, "iam role "+name)
	}
	if err := attachPolicy(ctx, c, name, fmt.Sprintf("arn:%s:iam::aws:%s", partition(c.region), ecsInstancePolicy)); err != nil {
		return err
	}
	profile, err := c.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	switch {
	case isIAMNotFound(err):
		if _, err := c.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{
			InstanceProfileName: aws.String(name), Tags: iamTags(tags)}); err != nil && !hasCode(err, "EntityAlreadyExists") {
			return fmt.Errorf("create instance profile %s: %w", name, err)
		}
		r.Created = append(r.Created, "iam instance profile "+name)
	case err != nil:
		return fmt.Errorf("get instance profile %s: %w", name, err)
	default:
		// Ours when tagged so, or when it holds no role but ours (kumo
		// keeps no instance-profile tags); one holding another role is
		// someone else's, and its instances would not be ours.
		holds := ""
		for _, ro := range profile.InstanceProfile.Roles {
			holds = aws.ToString(ro.RoleName)
		}
		if iamTagMap(profile.InstanceProfile.Tags)[TagManaged] != "true" && holds != "" && holds != name {
			return &NotOwnedError{Kind: "iam instance profile", Name: name}
		}
		r.Found = append(r.Found, "iam instance profile "+name)
		if holds == name {
			return nil
		}
	}
	// An instance profile holds one role: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2_instance-profiles.html
	if _, err := c.iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{
		InstanceProfileName: aws.String(name), RoleName: aws.String(name)}); err != nil && !hasCode(err, "LimitExceeded") {
		return fmt.Errorf("add role %s to instance profile %s: %w", name, name, err)
	}
	return nil
}

// attachPolicy attaches the managed policy arn to role unless it is
// attached already, so a bootstrap that finds everything writes nothing.
func attachPolicy(ctx context.Context, c *clients, role, arn string) error {
	p := iam.NewListAttachedRolePoliciesPaginator(c.iam, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(role)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list policies attached to role %s: %w", role, err)
		}
		for _, ap := range out.AttachedPolicies {
			if aws.ToString(ap.PolicyArn) == arn {
				return nil
			}
		}
	}
	if _, err := c.iam.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(role), PolicyArn: aws.String(arn)}); err != nil {
		return fmt.Errorf("attach %s to role %s: %w", arn, role, err)
	}
	return nil
}
