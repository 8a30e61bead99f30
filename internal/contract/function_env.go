package contract

import (
	"errors"
	"strconv"
	"strings"
)

// DefaultMaxTasks is the running-task cap a stage function applies when
// EnvMaxTasks is unset.
const DefaultMaxTasks = 10

// FunctionEnv is the stage function's environment: what the agent's
// provisioner sets on the Lambda function (Env) and the function reads at
// start (ReadFunctionEnv).
type FunctionEnv struct {
	QueueURL       string   // EnvQueueURL: the stage's work queue
	DLQURL         string   // EnvDLQURL: where records that can never be processed go
	Cluster        string   // EnvCluster: ECS cluster name or ARN
	TaskDefinition string   // EnvTaskDefinition: ARN with revision, or family:revision
	Subnets        []string // EnvSubnets: comma list, at least one (awsvpc needs it)
	SecurityGroups []string // EnvSecurityGroups: comma list; empty means the VPC's default group
	AssignPublicIP bool     // EnvAssignPublicIP: give tasks a public IP (public subnets without NAT)
	MaxTasks       int      // EnvMaxTasks: most tasks of the stage running at once, at least 1
	Container      string   // EnvContainer: the algorithm container's name in the task definition
	Workflow       string   // EnvWorkflow: for logs and dead-letter attributes
	Stage          int      // EnvStage: for logs and dead-letter attributes
	// JobQueue and JobDefinition are set for a stage placed on AWS Batch:
	// the function submits jobs (the queue's ARN, the definition's ARN
	// with its revision) instead of starting tasks, and Cluster,
	// TaskDefinition and the network are then not needed (the compute
	// environment holds the network).
	JobQueue      string // EnvJobQueue
	JobDefinition string // EnvJobDefinition
}

// OnBatch reports whether the stage runs on AWS Batch: its function
// submits jobs rather than starting Fargate tasks.
func (e FunctionEnv) OnBatch() bool { return e.JobQueue != "" }

// Env returns e as environment variables. Every variable is written, empty
// ones included, so that the function's configuration is the same map
// whatever was set before; the two of AWS Batch only for a stage on Batch,
// so a Fargate stage's configuration stays what older agents wrote and is
// not updated for nothing.
func (e FunctionEnv) Env() map[string]string {
	env := map[string]string{
		EnvQueueURL:       e.QueueURL,
		EnvDLQURL:         e.DLQURL,
		EnvCluster:        e.Cluster,
		EnvTaskDefinition: e.TaskDefinition,
		EnvSubnets:        strings.Join(e.Subnets, ","),
		EnvSecurityGroups: strings.Join(e.SecurityGroups, ","),
		EnvAssignPublicIP: strconv.FormatBool(e.AssignPublicIP),
		EnvMaxTasks:       strconv.Itoa(e.MaxTasks),
		EnvContainer:      e.Container,
		EnvWorkflow:       e.Workflow,
		EnvStage:          strconv.Itoa(e.Stage),
	}
	if e.OnBatch() {
		env[EnvJobQueue], env[EnvJobDefinition] = e.JobQueue, e.JobDefinition
	}
	return env
}

// ReadFunctionEnv reads a FunctionEnv through getenv (os.Getenv in
// production). It reports every missing or malformed variable at once, each
// error naming its variable; even then it returns what it could read, so
// that the caller can add its own checks to the same report.
func ReadFunctionEnv(getenv func(string) string) (FunctionEnv, error) {
	r := envReader{getenv: getenv}
	e := FunctionEnv{
		QueueURL:       r.required(EnvQueueURL),
		DLQURL:         r.required(EnvDLQURL),
		Subnets:        r.list(EnvSubnets),
		SecurityGroups: r.list(EnvSecurityGroups),
		Container:      r.optional(EnvContainer),
		Workflow:       r.optional(EnvWorkflow),
		JobQueue:       r.optional(EnvJobQueue),
	}
	if e.OnBatch() {
		// Batch jobs run in the compute environment's network.
		e.JobDefinition = r.required(EnvJobDefinition)
		e.Cluster, e.TaskDefinition = r.optional(EnvCluster), r.optional(EnvTaskDefinition)
	} else {
		e.Cluster, e.TaskDefinition = r.required(EnvCluster), r.required(EnvTaskDefinition)
	}
	if len(e.Subnets) == 0 && !e.OnBatch() {
		r.fail(errors.New(EnvSubnets + " is not set (Fargate tasks need at least one subnet)"))
	}
	e.AssignPublicIP = r.boolean(EnvAssignPublicIP)
	e.MaxTasks = r.positive(EnvMaxTasks, DefaultMaxTasks)
	e.Stage = r.stage()
	return e, r.err()
}
