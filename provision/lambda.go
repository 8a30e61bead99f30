package provision

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// isLambdaConflict reports ResourceConflictException: on CreateFunction the
// function exists, on AddPermission the statement id is taken.
func isLambdaConflict(err error) bool {
	var rce *lambdatypes.ResourceConflictException
	return errors.As(err, &rce) || hasCode(err, "ResourceConflictException")
}

func isLambdaNotFound(err error) bool {
	var rnf *lambdatypes.ResourceNotFoundException
	return errors.As(err, &rnf) || hasCode(err, "ResourceNotFoundException")
}

// codeSHA256 returns a deployment package's hash as Lambda reports it
// (CodeSha256: base64 of the SHA-256).
func codeSHA256(zip []byte) string {
	sum := sha256.Sum256(zip)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// functionConfig is the part of a function's configuration cloudpipe sets.
type functionConfig struct {
	Role        string
	Environment map[string]string
}

// functionEnvironment returns the stage function's environment: everything
// the handler needs to queue an upload and start a task for it in net, the
// network of the stage's region.
func (p *Provisioner) functionEnvironment(spec StageSpec, ids StageResources, net Network) map[string]string {
	return p.functionEnv(spec, ids, net).Env()
}

// functionEnv is the stage function's configuration; the agent starts a
// stage's task from the same one (StartStageTask).
func (p *Provisioner) functionEnv(spec StageSpec, ids StageResources, net Network) contract.FunctionEnv {
	maxTasks := spec.MaxTasks
	if maxTasks <= 0 {
		maxTasks = DefaultMaxTasks
	}
	env := contract.FunctionEnv{
		QueueURL:       ids.QueueURL,
		DLQURL:         ids.DLQURL,
		Cluster:        p.opts.Cluster,
		TaskDefinition: ids.TaskDefinitionARN,
		Subnets:        net.Subnets,
		SecurityGroups: net.SecurityGroups,
		AssignPublicIP: net.AssignPublicIP,
		MaxTasks:       maxTasks,
		Container:      spec.Algorithm.Name,
		Workflow:       spec.Workflow,
		Stage:          spec.Stage,
	}
	if spec.Batch != nil {
		env.JobQueue, env.JobDefinition = ids.JobQueueARN, ids.JobDefinitionARN
	}
	return env
}

// configDiffers reports whether a function's configuration differs from what
// cloudpipe sets.
func (p *Provisioner) configDiffers(have *lambdatypes.FunctionConfiguration, want functionConfig) bool {
	return len(configDrift("", have, want)) > 0
}

// configDrift lists the settings of the function name's configuration that
// differ from what cloudpipe sets: what ensureFunction updates, and what a
// drift check reports. Environment values are not shown (a report is read
// in chat): only the names of the variables that differ.
func configDrift(name string, have *lambdatypes.FunctionConfiguration, want functionConfig) []Drift {
	var env map[string]string
	if have.Environment != nil {
		env = have.Environment.Variables
	}
	d := func(setting, w, h string) Drift {
		return Drift{Kind: kindFunction, Name: name, Setting: setting, Want: w, Have: h}
	}
	var out []Drift
	for _, f := range []struct{ setting, want, have string }{
		{"Role", want.Role, aws.ToString(have.Role)},
		{"Runtime", lambdaRuntime, string(have.Runtime)},
		{"Handler", lambdaHandler, aws.ToString(have.Handler)},
		{"Timeout", strconv.Itoa(lambdaTimeoutSec), strconv.Itoa(int(aws.ToInt32(have.Timeout)))},
		{"MemorySize", strconv.Itoa(lambdaMemoryMiB), strconv.Itoa(int(aws.ToInt32(have.MemorySize)))},
	} {
		if f.want != f.have {
			out = append(out, d(f.setting, f.want, f.have))
		}
	}
	if !maps.Equal(env, want.Environment) {
		union := maps.Clone(want.Environment)
		if union == nil {
			union = map[string]string{}
		}
		maps.Copy(union, env)
		var keys []string
		for _, k := range slices.Sorted(maps.Keys(union)) {
			hv, inHave := env[k]
			wv, inWant := want.Environment[k]
			if inHave != inWant || hv != wv {
				keys = append(keys, k)
			}
		}
		out = append(out, d("Environment ("+strings.Join(keys, ", ")+")", "", ""))
	}
	return out
}

// functionDrift compares the function name's configuration with want,
// reading only; a missing function is no drift here (MissingResources
// reports it).
func functionDrift(ctx context.Context, c *clients, name string, want functionConfig) ([]Drift, error) {
	have, err := c.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: &name})
	if isLambdaNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get function %s: %w", name, err)
	}
	return configDrift(name, &lambdatypes.FunctionConfiguration{
		Role: have.Role, Runtime: have.Runtime, Handler: have.Handler, Timeout: have.Timeout,
		MemorySize: have.MemorySize, Environment: have.Environment,
	}, want), nil
}

// codeDiffers reports whether a function runs other code, or on another
// architecture, than the package whose CodeSha256 is want. recorded is the
// CodeSha256 the inventory holds for the function: the hash of the package
// cloudpipe last gave it. It decides when known, because emulators do not
// compute CodeSha256 for code taken from S3 (kumo reports the previous
// package's, or that of no bytes), while AWS computes it for either
// source. Without a record (an inventory from before the hash was kept, a
// record lost in a crash) the function's own CodeSha256 decides, so code
// that differs, or an emulator's empty hash, means one update, after which
// the hash is on record.
func codeDiffers(have *lambdatypes.FunctionConfiguration, recorded, want, arch string) bool {
	haveArch := lambdatypes.ArchitectureX8664
	if len(have.Architectures) > 0 {
		haveArch = have.Architectures[0]
	}
	if haveArch != lambdatypes.Architecture(arch) {
		return true
	}
	if recorded != "" {
		return recorded != want
	}
	return aws.ToString(have.CodeSha256) != want
}

// ensureFunction creates the stage function, or brings an existing one of
// ours up to date: configuration and code are updated only when they
// differ, the code judged by recordedCode, the CodeSha256 on record for it
// (see codeDiffers). A function without our tags gives a
// *NotOwnedError. It returns the function ARN and the CodeSha256 of the
// package it now runs, for the record ("" when that is not known).
func (p *Provisioner) ensureFunction(ctx context.Context, c *clients, name string, want functionConfig, tags map[string]string,
	recordedCode string) (arn, codeSum string, err error) {
	cur, err := c.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: &name})
	if isLambdaNotFound(err) {
		arn, sum, cerr := p.createFunction(ctx, c, name, want, tags)
		if !isLambdaConflict(cerr) {
			return arn, sum, cerr
		}
		// It exists after all: created by an attempt whose answer was lost
		// (the SDK retried CreateFunction) or by another pass. Check and
		// update it like any existing function.
		cur, err = c.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: &name})
	}
	if err != nil {
		return "", "", fmt.Errorf("get function %s: %w", name, err)
	}
	if !ownedBy(cur.Tags, tags[TagWorkflow]) {
		return "", "", &NotOwnedError{Kind: "lambda function", Name: name}
	}
	cfg := cur.Configuration
	arn = aws.ToString(cfg.FunctionArn)
	if p.configDiffers(cfg, want) {
		in := &lambda.UpdateFunctionConfigurationInput{
			FunctionName: &name,
			Role:         aws.String(want.Role),
			Runtime:      lambdatypes.Runtime(lambdaRuntime),
			Handler:      aws.String(lambdaHandler),
			Timeout:      aws.Int32(lambdaTimeoutSec),
			MemorySize:   aws.Int32(lambdaMemoryMiB),
			Environment:  &lambdatypes.Environment{Variables: want.Environment},
		}
		err := p.retryPropagation(ctx, "update function configuration", isLambdaRoleNotReady, func(ctx context.Context) error {
			_, err := c.lambda.UpdateFunctionConfiguration(ctx, in)
			return err
		})
		if err != nil {
			return arn, "", fmt.Errorf("update function configuration %s: %w", name, err)
		}
		// A function accepts one update at a time: wait before the next.
		if err := p.waitFunctionUpdated(ctx, c, name); err != nil {
			return arn, "", err
		}
	}
	sum, err := p.codeSHA256(ctx)
	if err != nil {
		return arn, "", fmt.Errorf("function %s: %w", name, err)
	}
	if !codeDiffers(cfg, recordedCode, sum, p.opts.LambdaArchitecture) {
		return arn, sum, nil
	}
	code, err := p.functionCode(ctx, c)
	if err != nil {
		return arn, "", fmt.Errorf("update function code %s: %w", name, err)
	}
	_, err = c.lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{
		FunctionName:  &name,
		S3Bucket:      code.S3Bucket,
		S3Key:         code.S3Key,
		ZipFile:       code.ZipFile,
		Architectures: []lambdatypes.Architecture{lambdatypes.Architecture(p.opts.LambdaArchitecture)},
	})
	if err != nil {
		return arn, "", fmt.Errorf("update function code %s: %w", name, err)
	}
	if err := p.waitFunctionUpdated(ctx, c, name); err != nil {
		return arn, "", err
	}
	return arn, code.sha256, nil
}

func (p *Provisioner) createFunction(ctx context.Context, c *clients, name string, want functionConfig, tags map[string]string) (arn, codeSum string, err error) {
	code, err := p.functionCode(ctx, c)
	if err != nil {
		return "", "", fmt.Errorf("create function %s: %w", name, err)
	}
	in := &lambda.CreateFunctionInput{
		FunctionName:  &name,
		Role:          aws.String(want.Role),
		Runtime:       lambdatypes.Runtime(lambdaRuntime),
		Handler:       aws.String(lambdaHandler),
		Code:          &code.FunctionCode,
		Architectures: []lambdatypes.Architecture{lambdatypes.Architecture(p.opts.LambdaArchitecture)},
		Timeout:       aws.Int32(lambdaTimeoutSec),
		MemorySize:    aws.Int32(lambdaMemoryMiB),
		Environment:   &lambdatypes.Environment{Variables: want.Environment},
		Description:   aws.String("cloudpipe " + tags[TagWorkflow] + " stage " + tags[TagStage] + ": queue uploads and start tasks"),
		Tags:          tags,
	}
	err = p.retryPropagation(ctx, "create function", isLambdaRoleNotReady, func(ctx context.Context) error {
		out, err := c.lambda.CreateFunction(ctx, in)
		if err == nil {
			arn = aws.ToString(out.FunctionArn)
		}
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("create function %s: %w", name, err)
	}
	return arn, code.sha256, p.waitFunctionUpdated(ctx, c, name)
}

// Bounds of waitFunctionUpdated.
const (
	functionWaitTimeout = 5 * time.Minute
	functionPollFirst   = 500 * time.Millisecond
	functionPollMax     = 5 * time.Second
)

// waitFunctionUpdated polls until the function is Active and no update is
// in progress: Lambda rejects a second update (ResourceConflictException)
// and S3 cannot invoke a Pending function.
func (p *Provisioner) waitFunctionUpdated(ctx context.Context, c *clients, name string) error {
	ctx, cancel := context.WithTimeout(ctx, functionWaitTimeout)
	defer cancel()
	for poll := 1; ; poll++ {
		out, err := c.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: &name})
		if err != nil {
			return fmt.Errorf("wait for function %s: %w", name, err)
		}
		switch {
		case out.State == lambdatypes.StateFailed || out.LastUpdateStatus == lambdatypes.LastUpdateStatusFailed:
			return fmt.Errorf("wait for function %s: update failed: %s%s", name,
				aws.ToString(out.StateReason), aws.ToString(out.LastUpdateStatusReason))
		case out.State != lambdatypes.StatePending && out.LastUpdateStatus != lambdatypes.LastUpdateStatusInProgress:
			return nil
		}
		// A poll, not a retry after a failure: no jitter is needed.
		if err := backoff.Sleep(ctx, backoff.Capped(poll, functionPollFirst, functionPollMax)); err != nil {
			return fmt.Errorf("wait for function %s: %w", name, err)
		}
	}
}

// resourcePolicy is a function's resource policy as GetPolicy returns it.
type resourcePolicy struct {
	Statement []struct {
		Sid       string
		Principal map[string]any
		Condition map[string]map[string]any
	}
}

// ensurePermission lets S3 invoke the function for uploads to bucket in
// account: statement "cloudpipe-s3" with SourceArn and SourceAccount (so no
// other bucket or account can trigger it). An existing statement with other
// conditions is replaced; a matching one is left alone.
func ensurePermission(ctx context.Context, c *clients, function, bucketArn, account string) error {
	for attempt := 0; ; attempt++ {
		err := addPermission(ctx, c, function, bucketArn, account)
		if !isLambdaConflict(err) || attempt > 0 {
			return err
		}
		// The statement exists after all: added by an attempt whose answer
		// was lost (the SDK retried AddPermission) or by another pass. Check
		// it again like one found at the start.
	}
}

func addPermission(ctx context.Context, c *clients, function, bucketArn, account string) error {
	out, err := c.lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: &function})
	if err != nil && !isLambdaNotFound(err) {
		return fmt.Errorf("get function policy %s: %w", function, err)
	}
	if err == nil {
		var pol resourcePolicy
		if err := json.Unmarshal([]byte(aws.ToString(out.Policy)), &pol); err != nil {
			return fmt.Errorf("get function policy %s: %w", function, err)
		}
		for _, st := range pol.Statement {
			if st.Sid != permissionSID {
				continue
			}
			if fmt.Sprint(st.Condition["ArnLike"]["AWS:SourceArn"]) == bucketArn &&
				fmt.Sprint(st.Condition["StringEquals"]["AWS:SourceAccount"]) == account &&
				fmt.Sprint(st.Principal["Service"]) == "s3.amazonaws.com" {
				return nil
			}
			_, err := c.lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: &function, StatementId: aws.String(permissionSID)})
			if err != nil && !isLambdaNotFound(err) {
				return fmt.Errorf("remove permission %s: %w", function, err)
			}
		}
	}
	_, err = c.lambda.AddPermission(ctx, &lambda.AddPermissionInput{
		FunctionName:  &function,
		StatementId:   aws.String(permissionSID),
		Action:        aws.String("lambda:InvokeFunction"),
		Principal:     aws.String("s3.amazonaws.com"),
		SourceArn:     aws.String(bucketArn),
		SourceAccount: aws.String(account),
	})
	if err != nil {
		return fmt.Errorf("add permission %s: %w", function, err)
	}
	return nil
}

// deleteFunction deletes the function name (its resource policy goes with
// it) if it is ours.
func deleteFunction(ctx context.Context, c *clients, name, workflow string) (outcome, error) {
	cur, err := c.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: &name})
	if isLambdaNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get function %s: %w", name, err)
	}
	if !ownedBy(cur.Tags, workflow) {
		return outcomeNotOwned, nil
	}
	_, err = c.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: &name})
	if isLambdaNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("delete function %s: %w", name, err)
	}
	return outcomeDeleted, nil
}

// functionExists reports whether the function name exists.
func functionExists(ctx context.Context, c *clients, name string) (bool, error) {
	_, err := c.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: &name})
	if isLambdaNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get function %s: %w", name, err)
	}
	return true, nil
}
