package deploy_test

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// call is one API call the agent made, in the order the calls started.
type call struct {
	Op    string // "<ServiceID>.<Operation>", as testenv.CallCounter names it
	Input any    // the SDK input, e.g. *s3.PutObjectInput
}

// callLog is SDK middleware that records every call in order. The order
// matters for tag conditions: a resource has tags only once the call that
// created it has been made. (testenv.CallCounter keeps calls per operation,
// not in order.)
type callLog struct {
	mu    sync.Mutex
	calls []call
}

func (l *callLog) attach(cfg *aws.Config) {
	opts := cfg.APIOptions[:len(cfg.APIOptions):len(cfg.APIOptions)]
	cfg.APIOptions = append(opts, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("deploy.callLog",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				l.mu.Lock()
				l.calls = append(l.calls, call{awsmiddleware.GetServiceID(ctx) + "." + awsmiddleware.GetOperationName(ctx), in.Parameters})
				l.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

func (l *callLog) all() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}
