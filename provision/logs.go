package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	logstypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
)

// Log groups of a stage:
//   - /aws/lambda/cp-<workflow>-<stage>: the stage function's logs, created
//     here (not by Lambda on first write) so it has a retention and our tags;
//   - /cloudpipe/<workflow>: the containers of every stage of the workflow,
//     one stream prefix per stage. Every stage ensures it and whichever
//     comes first creates it, but it belongs to stage 0 (see
//     workflowLogGroupOwner): only stage 0's DeleteStage removes it and only
//     stage 0's MissingResources reports it.

func isLogsNotFound(err error) bool {
	var rnf *logstypes.ResourceNotFoundException
	return errors.As(err, &rnf) || hasCode(err, "ResourceNotFoundException")
}

// findLogGroup returns the log group named name, or ErrNotFound.
func findLogGroup(ctx context.Context, c *clients, name string) (*logstypes.LogGroup, error) {
	pages := cloudwatchlogs.NewDescribeLogGroupsPaginator(c.logs, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: &name})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe log groups %s: %w", name, err)
		}
		for i := range page.LogGroups {
			if aws.ToString(page.LogGroups[i].LogGroupName) == name {
				return &page.LogGroups[i], nil
			}
		}
	}
	return nil, fmt.Errorf("describe log groups %s: %w", name, ErrNotFound)
}

// findLogGroupTags returns the tags of group, or ErrNotFound.
func findLogGroupTags(ctx context.Context, c *clients, group *logstypes.LogGroup) (map[string]string, error) {
	name := aws.ToString(group.LogGroupName)
	// ListTagsForResource wants the ARN without the ":*" that AWS appends
	// to DescribeLogGroups' arn field (logGroupArn is the bare one).
	arn := aws.ToString(group.LogGroupArn)
	if arn == "" {
		arn = strings.TrimSuffix(aws.ToString(group.Arn), ":*")
	}
	out, err := c.logs.ListTagsForResource(ctx, &cloudwatchlogs.ListTagsForResourceInput{ResourceArn: &arn})
	if isLogsNotFound(err) {
		return nil, fmt.Errorf("list log group tags %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("list log group tags %s: %w", name, err)
	}
	return out.Tags, nil
}

// ensureLogGroup creates log group name with tags and retention, or checks
// that an existing one is ours and sets its retention if it differs.
func ensureLogGroup(ctx context.Context, c *clients, name string, retentionDays int32, tags map[string]string) error {
	group, err := findLogGroup(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		_, err := c.logs.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: &name, Tags: tags})
		var exists *logstypes.ResourceAlreadyExistsException
		if errors.As(err, &exists) {
			// Created concurrently by another stage of the workflow.
			return ensureLogGroup(ctx, c, name, retentionDays, tags)
		}
		if err != nil {
			return fmt.Errorf("create log group %s: %w", name, err)
		}
		return putRetention(ctx, c, name, retentionDays)
	}
	if err != nil {
		return err
	}
	have, err := findLogGroupTags(ctx, c, group)
	if err != nil {
		return err
	}
	if !ownedBy(have, tags[TagWorkflow]) {
		return &NotOwnedError{Kind: "log group", Name: name}
	}
	if aws.ToInt32(group.RetentionInDays) != retentionDays {
		return putRetention(ctx, c, name, retentionDays)
	}
	return nil
}

func putRetention(ctx context.Context, c *clients, name string, days int32) error {
	_, err := c.logs.PutRetentionPolicy(ctx, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: &name, RetentionInDays: &days})
	if err != nil {
		return fmt.Errorf("put retention policy %s: %w", name, err)
	}
	return nil
}

// deleteLogGroup deletes log group name if it is ours.
func deleteLogGroup(ctx context.Context, c *clients, name, workflow string) (outcome, error) {
	group, err := findLogGroup(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, err
	}
	tags, err := findLogGroupTags(ctx, c, group)
	if errors.Is(err, ErrNotFound) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, err
	}
	if !ownedBy(tags, workflow) {
		return outcomeNotOwned, nil
	}
	_, err = c.logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: &name})
	if isLogsNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("delete log group %s: %w", name, err)
	}
	return outcomeDeleted, nil
}
