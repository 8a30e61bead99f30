package provision_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/cloudpipe/cloudpipe/provision"
)

func TestLogGroups(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	if res.LogGroup != "/cloudpipe/"+spec.Workflow || res.LambdaLogGroup != "/aws/lambda/"+provision.ResourceName(spec.Workflow, 0) {
		t.Errorf("log groups %s, %s", res.LogGroup, res.LambdaLogGroup)
	}
	for _, g := range []string{res.LogGroup, res.LambdaLogGroup} {
		out, err := e.logs.DescribeLogGroups(t.Context(), &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: &g})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.LogGroups) != 1 || aws.ToInt32(out.LogGroups[0].RetentionInDays) != provision.DefaultLogRetentionDays {
			t.Fatalf("log group %s = %+v, want one with %d days retention", g, out.LogGroups, provision.DefaultLogRetentionDays)
		}
		arn := strings.TrimSuffix(aws.ToString(out.LogGroups[0].Arn), ":*")
		tags, err := e.logs.ListTagsForResource(t.Context(), &cloudwatchlogs.ListTagsForResourceInput{ResourceArn: &arn})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{provision.TagManaged: "true", provision.TagWorkflow: spec.Workflow, provision.TagStage: "0"}
		if !maps.Equal(tags.Tags, want) {
			t.Errorf("log group %s tags = %v, want %v", g, tags.Tags, want)
		}
	}
}
