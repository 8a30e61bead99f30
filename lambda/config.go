// Package lambda is the stage function of a cloudpipe pipeline: for each
// object created in the stage's input bucket it queues one message on the
// stage's work queue and starts Fargate tasks (or, for a stage placed on
// AWS Batch, submits jobs) whose runners drain the queue.
//
// The agent's own binary is the function's code (docs/design.md, "One binary, three
// roles"); cmd/agent calls Start when the Lambda runtime runs it as bootstrap.
package lambda

import (
	"errors"
	"fmt"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/stagetask"
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
	if env.TaskDefinition != "" && stagetask.Family(env.TaskDefinition) == "" {
		errs = append(errs, fmt.Errorf("%s=%q names no task definition family", contract.EnvTaskDefinition, env.TaskDefinition))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return Config{FunctionEnv: env}, nil
}
