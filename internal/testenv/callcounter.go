package testenv

import (
	"context"
	"maps"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// CallCounter is SDK middleware that counts API calls by operation and
// records each call's input, so tests can assert "no writes" budgets and
// inspect exactly what was sent (kumo silently drops parts of some requests,
// such as a task definition's volumes and secrets, so its echo cannot be
// trusted). Operations are keyed "<ServiceID>.<Operation>", e.g.
// "SQS.CreateQueue", "CloudWatch Logs.PutRetentionPolicy".
//
// A call is counted once however often the SDK retries it. The zero value is
// ready to use and all methods are safe for concurrent use.
type CallCounter struct {
	mu     sync.Mutex
	ops    map[string]int
	inputs map[string][]any
}

// readPrefixes name the operations that only read; every other operation
// counts as a write.
var readPrefixes = []string{"Get", "List", "Describe", "Head", "Receive"}

// IsWrite reports whether an operation name (with or without the service
// prefix) changes something, i.e. does not start with Get, List, Describe,
// Head or Receive.
func IsWrite(op string) bool {
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	for _, p := range readPrefixes {
		if strings.HasPrefix(op, p) {
			return false
		}
	}
	return true
}

// Attach adds the counter to cfg's APIOptions, so every client built from
// cfg (or a copy made afterwards) is counted.
func (c *CallCounter) Attach(cfg *aws.Config) {
	// Clip so that appending never writes into a backing array shared with
	// another copy of the config.
	opts := cfg.APIOptions[:len(cfg.APIOptions):len(cfg.APIOptions)]
	cfg.APIOptions = append(opts, c.addMiddleware)
}

func (c *CallCounter) addMiddleware(stack *middleware.Stack) error {
	// Initialize runs once per operation call, before the retry loop, so a
	// retried call counts once.
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("testenv.CallCounter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.record(awsmiddleware.GetServiceID(ctx)+"."+awsmiddleware.GetOperationName(ctx), in.Parameters)
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

func (c *CallCounter) record(op string, input any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ops == nil {
		c.ops = map[string]int{}
		c.inputs = map[string][]any{}
	}
	c.ops[op]++
	c.inputs[op] = append(c.inputs[op], input)
}

// Total returns the number of calls since the last Reset.
func (c *CallCounter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.ops {
		n += v
	}
	return n
}

// Writes returns the number of calls since the last Reset whose operation
// is a write (see IsWrite).
func (c *CallCounter) Writes() int {
	n := 0
	for _, v := range c.WriteOps() {
		n += v
	}
	return n
}

// Ops returns a copy of the call counts by operation.
func (c *CallCounter) Ops() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ops)
}

// WriteOps returns the call counts of write operations only.
func (c *CallCounter) WriteOps() map[string]int {
	ops := c.Ops()
	maps.DeleteFunc(ops, func(op string, _ int) bool { return !IsWrite(op) })
	if ops == nil {
		ops = map[string]int{}
	}
	return ops
}

// Inputs returns the inputs of every recorded call of op (e.g.
// "ECS.RegisterTaskDefinition"), oldest first; each is the SDK input pointer,
// such as *ecs.RegisterTaskDefinitionInput.
func (c *CallCounter) Inputs(op string) []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]any(nil), c.inputs[op]...)
}

// LastInput returns the input of the most recent call of op, or nil.
func (c *CallCounter) LastInput(op string) any {
	in := c.Inputs(op)
	if len(in) == 0 {
		return nil
	}
	return in[len(in)-1]
}

// Reset forgets every recorded call.
func (c *CallCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops = nil
	c.inputs = nil
}
