// Package stagetask is how a stage's task is started and found, shared by
// the stage function (package lambda), which starts tasks for new uploads,
// and the agent (package provision), which starts one again for files left
// waiting when a stage's tasks stopped before receiving them. Both must
// start the same task, on the same network, and find the tasks the other
// started, so the RunTask request and the ListTasks filter are made here
// only.
package stagetask

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// StartedBy marks the tasks cloudpipe starts (ECS shows it, and ListTasks
// can filter on it).
const StartedBy = "cloudpipe"

// MaxRunTaskCount is the most tasks one RunTask call may start.
const MaxRunTaskCount = 10

// RunTaskInput is the RunTask request that starts count tasks of the stage
// env describes: its task definition on Fargate, in its cluster and
// network, with no overrides (the task definition carries the runner's
// environment). clientToken makes a repeated request start nothing more
// (at most 64 characters).
func RunTaskInput(env contract.FunctionEnv, count int, clientToken string) *ecs.RunTaskInput {
	publicIP := ecstypes.AssignPublicIpDisabled
	if env.AssignPublicIP {
		publicIP = ecstypes.AssignPublicIpEnabled
	}
	return &ecs.RunTaskInput{
		Cluster:        aws.String(env.Cluster),
		TaskDefinition: aws.String(env.TaskDefinition),
		Count:          aws.Int32(int32(count)),
		LaunchType:     ecstypes.LaunchTypeFargate,
		ClientToken:    aws.String(clientToken),
		StartedBy:      aws.String(StartedBy),
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets:        env.Subnets,
			SecurityGroups: env.SecurityGroups,
			AssignPublicIp: publicIP,
		}},
	}
}

// ListTasksInput lists the stage's tasks of desired status in cluster, a
// page of at most 100 from next. Tasks are found by the family of the stage's
// task definition, not by revision, so tasks of an older revision count
// too.
func ListTasksInput(cluster, taskDefinition string, desired ecstypes.DesiredStatus, next *string) *ecs.ListTasksInput {
	return &ecs.ListTasksInput{
		Cluster:       aws.String(cluster),
		Family:        aws.String(Family(taskDefinition)),
		DesiredStatus: desired,
		MaxResults:    aws.Int32(100),
		NextToken:     next,
	}
}

// Family returns the family of a task definition given as an ARN
// (arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION), as
// FAMILY:REVISION or as FAMILY; "" when td names none.
func Family(td string) string { return revisionedName(td, "task-definition/") }

// revisionedName is the name in ref, a revisioned resource given as an ARN
// (...:KIND/NAME:REVISION, kind being "task-definition/" or
// "job-definition/"), as NAME:REVISION or as NAME; "" when ref names none.
func revisionedName(ref, kind string) string {
	if i := strings.LastIndex(ref, kind); i >= 0 {
		ref = ref[i+len(kind):]
	}
	if i := strings.IndexByte(ref, ':'); i >= 0 {
		ref = ref[:i]
	}
	if strings.Contains(ref, "/") {
		return ""
	}
	return ref
}

// ToStart is how many tasks to start for files newly queued while running
// tasks of the stage run, under its cap of maxTasks running at once: one
// per file (every runner drains the queue, so fewer tasks than files is
// fine), never past the cap. The stage function applies it to each event's
// uploads and the agent to the files `agent redrive` queues again, so both
// keep the same cap.
func ToStart(files, running, maxTasks int) int {
	return max(0, min(files, maxTasks-running))
}
