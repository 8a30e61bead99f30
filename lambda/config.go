// Package lambda is the stage function of a cloudpipe pipeline: for each
// object created in the stage's input bucket it queues one message on the
// stage's work queue and starts Fargate tasks whose runners drain the queue.
//
// The agent's own binary is the function's code (docs/design.md, "One binary, three
// roles"); cmd/agent calls Start when the Lambda runtime runs it as bootstrap.
package lambda

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultMaxTasks is the running-task cap used when CLOUDPIPE_MAX_TASKS is
// unset; it matches the provisioner's default.
const DefaultMaxTasks = 10

// Config is the stage function's configuration, which the provisioner sets as
// the function's environment (provision/lambda.go, functionEnvironment).
type Config struct {
	QueueURL       string   // CLOUDPIPE_QUEUE_URL: the stage's work queue
	DLQURL         string   // CLOUDPIPE_DLQ_URL: where records that can never be processed go
	Cluster        string   // CLOUDPIPE_CLUSTER: ECS cluster name or ARN
	TaskDefinition string   // CLOUDPIPE_TASK_DEFINITION: ARN with revision, or family:revision
	Subnets        []string // CLOUDPIPE_SUBNETS: comma list, at least one (awsvpc needs it)
	SecurityGroups []string // CLOUDPIPE_SECURITY_GROUPS: comma list; empty means the VPC's default group
	AssignPublicIP bool     // CLOUDPIPE_ASSIGN_PUBLIC_IP: give tasks a public IP (public subnets without NAT)
	MaxTasks       int      // CLOUDPIPE_MAX_TASKS: most tasks of the stage running at once
	Container      string   // CLOUDPIPE_CONTAINER: the algorithm container's name in the task definition
	Workflow       string   // CLOUDPIPE_WORKFLOW: for logs and dead-letter attributes
	Stage          int      // CLOUDPIPE_STAGE: for logs and dead-letter attributes
}

// ConfigFromEnv reads the Config from the environment through getenv
// (os.Getenv in production). It reports every missing or malformed variable
// at once, each error naming its variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	required := func(name string) string {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is not set", name))
		}
		return v
	}
	c := Config{
		QueueURL:       required("CLOUDPIPE_QUEUE_URL"),
		DLQURL:         required("CLOUDPIPE_DLQ_URL"),
		Cluster:        required("CLOUDPIPE_CLUSTER"),
		TaskDefinition: required("CLOUDPIPE_TASK_DEFINITION"),
		Subnets:        splitList(getenv("CLOUDPIPE_SUBNETS")),
		SecurityGroups: splitList(getenv("CLOUDPIPE_SECURITY_GROUPS")),
		MaxTasks:       DefaultMaxTasks,
		Container:      strings.TrimSpace(getenv("CLOUDPIPE_CONTAINER")),
		Workflow:       strings.TrimSpace(getenv("CLOUDPIPE_WORKFLOW")),
	}
	if len(c.Subnets) == 0 {
		errs = append(errs, errors.New("CLOUDPIPE_SUBNETS is not set (Fargate tasks need at least one subnet)"))
	}
	if v := strings.TrimSpace(getenv("CLOUDPIPE_ASSIGN_PUBLIC_IP")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("CLOUDPIPE_ASSIGN_PUBLIC_IP=%q is not a boolean", v))
		}
		c.AssignPublicIP = b
	}
	if v := strings.TrimSpace(getenv("CLOUDPIPE_MAX_TASKS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("CLOUDPIPE_MAX_TASKS=%q is not a positive integer", v))
		}
		c.MaxTasks = n
	}
	if v := strings.TrimSpace(getenv("CLOUDPIPE_STAGE")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("CLOUDPIPE_STAGE=%q is not a stage index", v))
		}
		c.Stage = n
	}
	if c.TaskDefinition != "" && taskFamily(c.TaskDefinition) == "" {
		errs = append(errs, fmt.Errorf("CLOUDPIPE_TASK_DEFINITION=%q names no task definition family", c.TaskDefinition))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// splitList splits a comma list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// taskFamily returns the family of a task definition given as an ARN
// (arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION), as
// FAMILY:REVISION or as FAMILY. ListTasks filters by family, not by revision,
// so tasks of an older revision still count against the cap.
func taskFamily(td string) string {
	if i := strings.LastIndex(td, "task-definition/"); i >= 0 {
		td = td[i+len("task-definition/"):]
	}
	if i := strings.IndexByte(td, ':'); i >= 0 {
		td = td[:i]
	}
	if strings.Contains(td, "/") {
		return ""
	}
	return td
}
