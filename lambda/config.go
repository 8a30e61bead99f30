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
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// Config is the stage function's configuration: the environment the
// provisioner sets on the function (contract.FunctionEnv).
type Config struct {
	contract.FunctionEnv
}

// ConfigFromEnv reads the Config from the environment through getenv
// (os.Getenv in production). It reports every missing or malformed variable
// at once, each error naming its variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	env, err := contract.ReadFunctionEnv(getenv)
	errs := []error{err}
	if env.TaskDefinition != "" && taskFamily(env.TaskDefinition) == "" {
		errs = append(errs, fmt.Errorf("%s=%q names no task definition family", contract.EnvTaskDefinition, env.TaskDefinition))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return Config{FunctionEnv: env}, nil
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
