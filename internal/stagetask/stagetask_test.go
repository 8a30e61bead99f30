package stagetask_test

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

func TestFamily(t *testing.T) {
	for _, tc := range []struct{ td, want string }{
		{"arn:aws:ecs:eu-west-1:123456789012:task-definition/cp-wf-0:7", "cp-wf-0"},
		{"cp-wf-0:7", "cp-wf-0"},
		{"cp-wf-0", "cp-wf-0"},
		{"a/b:1", ""},
		{"", ""},
	} {
		if got := stagetask.Family(tc.td); got != tc.want {
			t.Errorf("Family(%q) = %q, want %q", tc.td, got, tc.want)
		}
	}
}

// TestRunTaskInput: the request carries the stage's task definition,
// cluster and network, marked as cloudpipe's.
func TestRunTaskInput(t *testing.T) {
	env := contract.FunctionEnv{Cluster: "cloudpipe", TaskDefinition: "cp-wf-0:3",
		Subnets: []string{"subnet-1"}, SecurityGroups: []string{"sg-1"}, AssignPublicIP: true}
	in := stagetask.RunTaskInput(env, 2, "tok")
	vpc := in.NetworkConfiguration.AwsvpcConfiguration
	switch {
	case aws.ToString(in.Cluster) != "cloudpipe", aws.ToString(in.TaskDefinition) != "cp-wf-0:3",
		aws.ToInt32(in.Count) != 2, aws.ToString(in.ClientToken) != "tok",
		aws.ToString(in.StartedBy) != stagetask.StartedBy, in.LaunchType != ecstypes.LaunchTypeFargate,
		!slices.Equal(vpc.Subnets, env.Subnets), !slices.Equal(vpc.SecurityGroups, env.SecurityGroups),
		vpc.AssignPublicIp != ecstypes.AssignPublicIpEnabled:
		t.Errorf("RunTaskInput = %+v (vpc %+v)", in, vpc)
	}
	env.AssignPublicIP = false
	if got := stagetask.RunTaskInput(env, 1, "t").NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp; got != ecstypes.AssignPublicIpDisabled {
		t.Errorf("AssignPublicIp = %s without AssignPublicIP", got)
	}
	l := stagetask.ListTasksInput("cloudpipe", "arn:aws:ecs:r:1:task-definition/cp-wf-0:3", ecstypes.DesiredStatusStopped, nil)
	if aws.ToString(l.Family) != "cp-wf-0" || l.DesiredStatus != ecstypes.DesiredStatusStopped || aws.ToString(l.Cluster) != "cloudpipe" {
		t.Errorf("ListTasksInput = %+v", l)
	}
}

func TestToStart(t *testing.T) {
	for _, tc := range []struct{ files, running, max, want int }{
		{3, 0, 10, 3},   // one task per file
		{30, 0, 10, 10}, // the cap
		{5, 8, 10, 2},   // what the cap leaves
		{5, 10, 10, 0},  // at the cap
		{5, 12, 10, 0},  // past it (ListTasks lags): none, never negative
		{0, 0, 10, 0},
		{4, 0, 1, 1}, // running tasks not counted: callers pass a cap of one
	} {
		if got := stagetask.ToStart(tc.files, tc.running, tc.max); got != tc.want {
			t.Errorf("ToStart(%d, %d, %d) = %d, want %d", tc.files, tc.running, tc.max, got, tc.want)
		}
	}
}
