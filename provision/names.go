package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// ResourceName returns "cp-<workflow>-<stage>", the name of a stage's queue,
// Lambda function and task-definition family, and the stem of its role, DLQ
// and log-group names. It is the one place cloudpipe formats AWS names, so a
// crash is resumed, never duplicated: the next pass finds what the last one
// created by name.
func ResourceName(workflow string, stage int) string {
	return "cp-" + workflow + "-" + strconv.Itoa(stage)
}

// DefaultStateBucket returns "cloudpipe-state-<account>-<region>", the state
// bucket bootstrap creates and the agent uses when no --state-bucket is
// given. The account and region keep it unique among S3's global names.
func DefaultStateBucket(accountID, region string) string {
	return "cloudpipe-state-" + accountID + "-" + region
}

// maxBucketName is S3's limit on bucket name length.
const maxBucketName = 63

// IntermediateBucketName returns the name of the bucket between stage and
// stage+1 of a sequence_run: "cp-<workflow>-<stage>-<10 hex>", where the hex
// is a hash of the account and region. S3 bucket names are global, so the
// hash keeps two accounts (or two regions of one account) deploying the same
// workflow apart, while the name stays deterministic for resuming. The result
// is a valid S3 name of at most 63 characters for any valid workflow name
// (lowercase letters, digits, hyphens); longer workflow names are cut and the
// full name folded into the hash so names stay unique.
func IntermediateBucketName(workflow string, stage int, accountID, region string) string {
	sum := sha256.Sum256([]byte(accountID + "/" + region))
	name := ResourceName(workflow, stage) + "-" + hex.EncodeToString(sum[:])[:10]
	if len(name) <= maxBucketName {
		return name
	}
	sum = sha256.Sum256([]byte(accountID + "/" + region + "/" + workflow))
	suffix := "-" + strconv.Itoa(stage) + "-" + hex.EncodeToString(sum[:])[:10]
	head := strings.TrimRight(("cp-" + workflow)[:maxBucketName-len(suffix)], "-.")
	return head + suffix
}

// Suffixes and fixed names derived from ResourceName.
const (
	roleLambda = "lambda" // role the stage's Lambda function runs as
	roleExec   = "exec"   // ECS task execution role: pull image, write logs, read secrets
	roleTask   = "task"   // ECS task role: what the runner itself may do

	inlinePolicyName   = "cloudpipe"      // the one inline policy of each role
	permissionSID      = "cloudpipe-s3"   // Lambda permission statement letting S3 invoke
	volumeName         = "cloudpipe"      // task volume the runner is installed into
	runnerMount        = "/cloudpipe"     // where that volume is mounted
	initContainerName  = "cloudpipe-init" // workflow.InitContainerName, which algorithms may not take
	lambdaTimeoutSec   = 60
	lambdaMemoryMiB    = 128
	lambdaRuntime      = "provided.al2023"
	lambdaHandler      = "bootstrap"
	notificationPrefix = "cloudpipe-"
)

// roleName returns the name of one of a stage's three roles.
func roleName(workflow string, stage int, kind string) string {
	return ResourceName(workflow, stage) + "-" + kind
}

// dlqName returns the name of a stage's dead-letter queue.
func dlqName(workflow string, stage int) string { return ResourceName(workflow, stage) + "-dlq" }

// workflowLogGroup returns the log group the containers of every stage of a
// workflow write to.
func workflowLogGroup(workflow string) string { return "/cloudpipe/" + workflow }

// lambdaLogGroup returns the log group Lambda writes a stage function's logs
// to (the Lambda default for the function name).
func lambdaLogGroup(workflow string, stage int) string {
	return "/aws/lambda/" + ResourceName(workflow, stage)
}

// notificationID returns the Id of the stage's entry in its input bucket's
// notification configuration; entries with other Ids are never touched.
func notificationID(workflow string, stage int) string {
	return notificationPrefix + ResourceName(workflow, stage)
}

// logStreamPrefix is the awslogs-stream-prefix of a stage's containers.
func logStreamPrefix(stage int) string { return "stage-" + strconv.Itoa(stage) }

// stageTags returns the tags every resource of a stage carries.
func stageTags(workflow string, stage int) map[string]string {
	return map[string]string{
		TagManaged:  "true",
		TagWorkflow: workflow,
		TagStage:    strconv.Itoa(stage),
	}
}

// ownedBy reports whether tags mark a resource as created by cloudpipe for
// workflow. The stage tag is not compared: the workflow's shared log group
// is created by whichever stage comes first.
func ownedBy(tags map[string]string, workflow string) bool {
	return tags[TagManaged] == "true" && tags[TagWorkflow] == workflow
}

// partition returns the ARN partition of a region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	default:
		return "aws"
	}
}

// bucketARN returns the ARN of an S3 bucket (S3 ARNs name neither region nor
// account).
func bucketARN(region, bucket string) string {
	return "arn:" + partition(region) + ":s3:::" + bucket
}

// logGroupARN returns the ARN of a log group, without the ":*" that IAM
// statements on its streams append.
func logGroupARN(region, account, group string) string {
	return fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s", partition(region), region, account, group)
}

// ecsARN returns the ARN of an ECS resource ("cluster/NAME", ...).
func ecsARN(region, account, resource string) string {
	return fmt.Sprintf("arn:%s:ecs:%s:%s:%s", partition(region), region, account, resource)
}

// clusterARN returns the ARN of an ECS cluster.
func clusterARN(region, account, cluster string) string {
	return ecsARN(region, account, "cluster/"+cluster)
}

// taskFamilyARN returns the ARN pattern matching every revision of a
// task-definition family.
func taskFamilyARN(region, account, family string) string {
	return ecsARN(region, account, "task-definition/"+family+":*")
}

// StageResourceNames lists the resources of one stage of workflow whose
// names cloudpipe derives, as "<kind> <name>" like DeleteResult names them,
// for plans that show what a create or a delete touches before anything
// exists. Buckets are left out: the workflow names its own, and an
// intermediate bucket's name needs the account (IntermediateBucketName).
// A stage on AWS Batch (onBatch) has a job definition where a Fargate
// stage has a task definition, of the same name.
func StageResourceNames(workflow string, stage int, onBatch bool) []string {
	n := namesOf(StageSpec{Workflow: workflow, Stage: stage})
	definition := kindTaskDefinition
	if onBatch {
		definition = kindJobDefinition
	}
	out := []string{
		kindQueue + " " + n.queue,
		kindQueue + " " + n.dlq,
		kindFunction + " " + n.function,
		definition + " " + n.family,
		kindRole + " " + n.lambdaRole,
		kindRole + " " + n.execRole,
		kindRole + " " + n.taskRole,
		kindLogGroup + " " + n.lambdaLogGroup,
	}
	if stage == workflowLogGroupOwner {
		out = append(out, kindLogGroup+" "+n.workflowLogGroup)
	}
	return out
}

// batchARN returns the ARN of an AWS Batch resource ("job-queue/NAME").
func batchARN(region, account, resource string) string {
	return fmt.Sprintf("arn:%s:batch:%s:%s:%s", partition(region), region, account, resource)
}

// jobQueueARN returns the ARN of a job queue.
func jobQueueARN(region, account, name string) string {
	return batchARN(region, account, "job-queue/"+name)
}

// jobDefinitionRevisionsARN returns the ARN pattern matching every revision
// of a job definition.
func jobDefinitionRevisionsARN(region, account, name string) string {
	return batchARN(region, account, "job-definition/"+name+":*")
}

// CapacityResourceNames lists, as "<kind> <name>", the shared resources of
// a Batch capacity: its compute environment and its job queue, which
// share the capacity's name.
func CapacityResourceNames(k BatchCapacity) []string {
	return []string{kindComputeEnvironment + " " + k.Name(), kindJobQueue + " " + k.Name()}
}
