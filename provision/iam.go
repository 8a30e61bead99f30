package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

func isIAMNotFound(err error) bool {
	var nse *iamtypes.NoSuchEntityException
	return errors.As(err, &nse) || hasCode(err, "NoSuchEntity")
}

// findRole returns the role named name, or ErrNotFound.
func findRole(ctx context.Context, c *clients, name string) (*iamtypes.Role, error) {
	out, err := c.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: &name})
	if isIAMNotFound(err) {
		return nil, fmt.Errorf("get role %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get role %s: %w", name, err)
	}
	return out.Role, nil
}

func iamTagMap(tags []iamtypes.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// ensureRole creates role name (trust policy, tags) with the inline policy
// "cloudpipe", or brings an existing role of ours up to date: its trust
// policy and inline policy are rewritten only if they grant something other
// than wanted. A role without our tags gives a *NotOwnedError. It returns
// the role ARN as IAM reports it (never built from the STS account, which
// emulators disagree on).
func ensureRole(ctx context.Context, c *clients, name string, trust, policy policyDocument, tags map[string]string) (string, error) {
	role, err := findRole(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		out, cerr := c.iam.CreateRole(ctx, &iam.CreateRoleInput{
			RoleName:                 &name,
			AssumeRolePolicyDocument: aws.String(trust.String()),
			Description:              aws.String("cloudpipe " + tags[TagWorkflow] + " stage " + tags[TagStage]),
			Tags:                     iamTags(tags),
		})
		switch {
		case cerr == nil:
			return aws.ToString(out.Role.Arn), putRolePolicy(ctx, c, name, policy)
		case !hasCode(cerr, "EntityAlreadyExists"):
			return "", fmt.Errorf("create role %s: %w", name, cerr)
		}
		// It exists after all: created by an attempt of this call whose
		// answer was lost (the SDK retried it) or by another pass. Check
		// and update it like any existing role.
		role, err = findRole(ctx, c, name)
	}
	if err != nil {
		return "", err
	}
	if !ownedBy(iamTagMap(role.Tags), tags[TagWorkflow]) {
		return "", &NotOwnedError{Kind: "iam role", Name: name}
	}
	arn := aws.ToString(role.Arn)
	if !policiesEqual(aws.ToString(role.AssumeRolePolicyDocument), trust) {
		_, err := c.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: &name, PolicyDocument: aws.String(trust.String())})
		if err != nil {
			return arn, fmt.Errorf("update assume role policy %s: %w", name, err)
		}
	}
	have, err := c.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &name, PolicyName: aws.String(inlinePolicyName)})
	switch {
	case isIAMNotFound(err):
	case err != nil:
		return arn, fmt.Errorf("get role policy %s: %w", name, err)
	case policiesEqual(aws.ToString(have.PolicyDocument), policy):
		return arn, nil
	}
	return arn, putRolePolicy(ctx, c, name, policy)
}

func putRolePolicy(ctx context.Context, c *clients, role string, policy policyDocument) error {
	_, err := c.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName:       &role,
		PolicyName:     aws.String(inlinePolicyName),
		PolicyDocument: aws.String(policy.String()),
	})
	if err != nil {
		return fmt.Errorf("put role policy %s: %w", role, err)
	}
	return nil
}

func iamTags(tags map[string]string) []iamtypes.Tag {
	out := make([]iamtypes.Tag, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, iamtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// deleteRole deletes role name if it is ours, its inline policies first
// (AWS refuses to delete a role that still has them).
func deleteRole(ctx context.Context, c *clients, name, workflow string) (outcome, error) {
	role, err := findRole(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, err
	}
	if !ownedBy(iamTagMap(role.Tags), workflow) {
		return outcomeNotOwned, nil
	}
	pages := iam.NewListRolePoliciesPaginator(c.iam, &iam.ListRolePoliciesInput{RoleName: &name})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if isIAMNotFound(err) {
			return outcomeGone, nil
		}
		if err != nil {
			return 0, fmt.Errorf("list role policies %s: %w", name, err)
		}
		for _, pol := range page.PolicyNames {
			_, err := c.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: &name, PolicyName: aws.String(pol)})
			if err != nil && !isIAMNotFound(err) {
				return 0, fmt.Errorf("delete role policy %s %s: %w", name, pol, err)
			}
		}
	}
	_, err = c.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: &name})
	if isIAMNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("delete role %s: %w", name, err)
	}
	return outcomeDeleted, nil
}

// roleDrift compares role name's trust policy and inline policy with the
// ones ensureRole writes, reading only; a missing role is no drift here
// (MissingResources reports it). Policy documents are not shown: only that
// they differ.
func roleDrift(ctx context.Context, c *clients, name string, trust, policy policyDocument) ([]Drift, error) {
	role, err := findRole(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Drift
	if !policiesEqual(aws.ToString(role.AssumeRolePolicyDocument), trust) {
		out = append(out, Drift{Kind: kindRole, Name: name, Setting: "trust policy"})
	}
	have, err := c.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &name, PolicyName: aws.String(inlinePolicyName)})
	switch {
	case isIAMNotFound(err):
		out = append(out, Drift{Kind: kindRole, Name: name, Setting: "inline policy " + inlinePolicyName, Want: "present", Have: "deleted"})
	case err != nil:
		return out, fmt.Errorf("get role policy %s: %w", name, err)
	case !policiesEqual(aws.ToString(have.PolicyDocument), policy):
		out = append(out, Drift{Kind: kindRole, Name: name, Setting: "inline policy " + inlinePolicyName})
	}
	return out, nil
}
