package main

import (
	"context"
	"fmt"
	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"golang.org/x/sync/errgroup"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// handlerReadyTimeout bounds the wait for a new handler to take its first
// invocation.
const handlerReadyTimeout = 15 * time.Second

// lambdas runs one handler process per deployed stage function, as the
// Lambda service would run the function's code. kumo hands S3 events only to
// a handler that is already polling its Runtime API, and does not pass the
// function's environment to it: so the demo starts each handler itself, with
// the environment the provisioner gave the function, and waits until it
// answers before anything is uploaded. The handlers poll kumo's Runtime API
// through the AWS rules, which play what Lambda does with an event the
// function failed: its retries, then its record to the stage's dead-letter
// queue (internal/awsrules, asyncinvoke.go).
type lambdas struct {
	exe         string
	runtimeAddr string   // host:port of the AWS rules, in front of kumo's Runtime API
	baseEnv     []string // the environment every child gets (see childEnv)
	stderr      io.Writer
	cfg         aws.Config // the operator's, for clients of each function's region
	log         *slog.Logger
	// authorize, if set, asks IAM what the Lambda service would with a
	// function's role (awsrules.Proxy.Authorize).
	authorize func(ctx context.Context, role, action, resource string) error

	wg sync.WaitGroup // one per handler process, done when waited for

	mu      sync.Mutex                   // guards the fields below
	stopped bool                         // stop was called: no handler starts
	procs   map[string]*handler          // by function name
	clients map[string]*awslambda.Client // by region
}

// handler is one running handler process.
type handler struct {
	fn     string
	region string            // the function's
	env    map[string]string // the function's environment it was started with
	pid    int
	cancel context.CancelFunc
	done   chan struct{} // closed when the process has exited
	err    error         // how it exited; read after done
}

func newLambdas(exe, runtimeAddr string, baseEnv []string, cfg aws.Config, stderr io.Writer, log *slog.Logger) *lambdas {
	// The readiness probe retries itself, quickly: the SDK's backoff would
	// only slow it down.
	cfg = cfg.Copy()
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	return &lambdas{
		exe: exe, runtimeAddr: runtimeAddr, baseEnv: baseEnv, stderr: stderr, cfg: cfg,
		log:     log.With("component", "lambdas"),
		procs:   map[string]*handler{},
		clients: map[string]*awslambda.Client{},
	}
}

// client is the Lambda client for the functions of region: a function
// answers only requests signed for its region.
func (l *lambdas) client(region string) *awslambda.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.clients[region]; ok {
		return c
	}
	cfg := l.cfg.Copy()
	if region != "" {
		cfg.Region = region
	}
	c := awslambda.NewFromConfig(cfg)
	l.clients[region] = c
	return c
}

// sync makes the running handlers match functions (each function's
// region by its name): it starts a handler for each function without one,
// restarts a handler whose function's environment changed or whose process
// died, and stops handlers of functions no longer deployed. It returns once
// every started handler has answered an invocation, with the names of those
// it started.
func (l *lambdas) sync(ctx context.Context, functions map[string]string) ([]string, error) {
	wanted := map[string]map[string]string{}
	regions := map[string]string{}
	for _, fn := range slices.Sorted(maps.Keys(functions)) {
		out, err := l.client(functions[fn]).GetFunctionConfiguration(ctx, &awslambda.GetFunctionConfigurationInput{FunctionName: aws.String(fn)})
		if err != nil {
			return nil, fmt.Errorf("get function configuration %s: %w", fn, err)
		}
		env := map[string]string{}
		if out.Environment != nil {
			env = maps.Clone(out.Environment.Variables)
		}
		// The handler acts as the function's role, as Lambda gives it
		// the role's session credentials, in the function's region, as
		// Lambda sets AWS_REGION and AWS_DEFAULT_REGION
		// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime).
		maps.Copy(env, roleCredentials(aws.ToString(out.Role)))
		fnRegion := arnRegion(aws.ToString(out.FunctionArn))
		if fnRegion == "" {
			fnRegion = functions[fn]
		}
		maps.Copy(env, regionEnv(fnRegion))
		l.checkLogs(ctx, aws.ToString(out.FunctionArn), aws.ToString(out.Role))
		wanted[fn], regions[fn] = env, fnRegion
	}

	l.mu.Lock()
	var stale []*handler
	for fn, h := range l.procs {
		env, ok := wanted[fn]
		if ok && maps.Equal(env, h.env) && !h.exited() {
			delete(wanted, fn) // up to date
			continue
		}
		stale = append(stale, h)
		delete(l.procs, fn)
	}
	l.mu.Unlock()
	for _, h := range stale {
		h.stop()
	}

	var started []*handler
	for _, fn := range slices.Sorted(maps.Keys(wanted)) {
		h, err := l.start(ctx, fn, regions[fn], wanted[fn])
		if err != nil {
			return nil, err
		}
		started = append(started, h)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, h := range started {
		g.Go(func() error { return l.waitReady(gctx, h) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var names []string
	for _, h := range started {
		names = append(names, h.fn)
	}
	return names, nil
}

// start starts the handler process of function fn with the function's
// environment env. The process outlives ctx: stop, or a sync that finds it
// stale, ends it.
func (l *lambdas) start(ctx context.Context, fn, region string, env map[string]string) (*handler, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(ctx, l.exe)
	cmd.Env = childEnv(l.baseEnv, env, map[string]string{
		roleEnv:                    "lambda",
		"AWS_LAMBDA_FUNCTION_NAME": fn,
		// kumo's Runtime API for this function, through the AWS rules:
		// the handler's lambda.Start polls
		// <this>/2018-06-01/runtime/invocation/next.
		"AWS_LAMBDA_RUNTIME_API":          l.runtimeAddr + "/_runtime/" + fn,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
	})
	cmd.Stdout, cmd.Stderr = l.stderr, l.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	dieWithParent(cmd)
	// Under the lock, so that stop either sees this handler or keeps it
	// from starting.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		cancel()
		return nil, fmt.Errorf("start handler of %s: the demo is stopping", fn)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start handler of %s: %w", fn, err)
	}
	h := &handler{fn: fn, region: region, env: env, pid: cmd.Process.Pid, cancel: cancel, done: make(chan struct{})}
	l.procs[fn] = h
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		h.err = cmd.Wait()
		close(h.done)
		if ctx.Err() == nil {
			// Not stopped by the demo: the next sync restarts it.
			l.log.Warn("stage function handler exited", "function", fn, "err", h.err)
		}
	}()
	l.log.Debug("stage function handler started", "function", fn, "pid", h.pid)
	return h, nil
}

// checkLogs asks IAM, when the demo checks policies, whether the
// function's role may write the function's logs, as the Lambda service
// does with it for every invocation
// (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html).
// Lambda runs a function whose role may not; its logs are then lost, which
// is only logged here (the denial counts in the IAM report).
func (l *lambdas) checkLogs(ctx context.Context, functionARN, roleARN string) {
	if l.authorize == nil || roleARN == "" {
		return
	}
	parts := strings.SplitN(functionARN, ":", 7) // arn:aws:lambda:REGION:ACCOUNT:function:NAME
	if len(parts) < 7 {
		return
	}
	stream := "arn:aws:logs:" + parts[3] + ":" + parts[4] + ":log-group:/aws/lambda/" + parts[6] +
		":log-stream:" + time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + strings.Repeat("0", 32)
	role := roleARN[strings.LastIndex(roleARN, "/")+1:]
	for _, action := range []string{"logs:CreateLogStream", "logs:PutLogEvents"} {
		if err := l.authorize(ctx, role, action, stream); err != nil {
			l.log.Warn("the stage function's role may not write its logs", "function", parts[6], "err", err)
			return
		}
	}
}

// waitReady invokes the function with an event holding no records until
// its handler answers: then kumo knows it polls, and S3 events reach it.
func (l *lambdas) waitReady(ctx context.Context, h *handler) error {
	ctx, cancel := context.WithTimeout(ctx, handlerReadyTimeout)
	defer cancel()
	var last error
	for {
		out, err := l.client(h.region).Invoke(ctx, &awslambda.InvokeInput{
			FunctionName:   aws.String(h.fn),
			InvocationType: lambdatypes.InvocationTypeRequestResponse,
			Payload:        []byte(`{"Records":[]}`),
		})
		switch {
		case err == nil && out.FunctionError == nil:
			return nil
		case err == nil:
			return fmt.Errorf("handler of %s failed an empty event: %s: %s", h.fn, aws.ToString(out.FunctionError), out.Payload)
		}
		// Until the handler has polled once, kumo answers that the
		// function has no runtime handler.
		last = err
		select {
		case <-h.done:
			return fmt.Errorf("handler of %s exited before it polled (%v); its log is above", h.fn, h.err)
		case <-ctx.Done():
			return fmt.Errorf("handler of %s not ready after %v: %w", h.fn, handlerReadyTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// anyExited reports whether a handler's process has died, which the next
// sync repairs.
func (l *lambdas) anyExited() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.procs {
		if h.exited() {
			return true
		}
	}
	return false
}

// stop stops every handler and waits for their processes.
func (l *lambdas) stop() {
	l.mu.Lock()
	l.stopped = true
	for _, h := range l.procs {
		h.cancel()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// stop ends h's process (SIGTERM, then SIGKILL) and waits for it.
func (h *handler) stop() {
	h.cancel()
	<-h.done
}

func (h *handler) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// childEnv builds the environment of a child process: base, then each of
// layers in turn (later wins).
func childEnv(base []string, layers ...map[string]string) []string {
	env := slices.Clone(base)
	for _, layer := range layers {
		for _, k := range slices.Sorted(maps.Keys(layer)) {
			env = append(env, k+"="+layer[k])
		}
	}
	// exec.Cmd keeps the last value of a repeated name.
	return env
}

// baseEnv is the environment every child starts from: no more of the
// demo's own environment than a program needs (PATH, HOME), so that the
// user's real AWS profile or credentials can never reach a child, and the
// emulator's endpoint with static credentials, as a task role or a
// function's execution role would provide.
func baseEnv(endpoint, region, logLevel string) []string {
	env := []string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_REGION=" + region,
		"AWS_DEFAULT_REGION=" + region,
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
		contract.EnvLogLevel + "=" + logLevel,
	}
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// regionEnv is the environment of a process that runs in region, as
// Lambda and ECS set it for a function or a task; nil for "" (the base
// environment's, the agent's region, stays).
func regionEnv(region string) map[string]string {
	if region == "" {
		return nil
	}
	return map[string]string{"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
}

// arnRegion is the region of a regional ARN (arn:aws:SERVICE:REGION:...),
// "" when s is not one.
func arnRegion(s string) string {
	parts := strings.SplitN(s, ":", 5)
	if len(parts) < 5 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

// roleCredentials is the environment of a process that acts as the role
// roleARN names: static credentials whose access key names the role to the
// AWS rules (awsrules.RoleAccessKeyID), as Lambda and ECS hand a function
// or a task its role's session credentials.
func roleCredentials(roleARN string) map[string]string {
	if roleARN == "" {
		return nil
	}
	return map[string]string{
		"AWS_ACCESS_KEY_ID":     awsrules.RoleAccessKeyID(roleARN[strings.LastIndex(roleARN, "/")+1:]),
		"AWS_SECRET_ACCESS_KEY": "role-session-secret",
		"AWS_SESSION_TOKEN":     "role-session-token",
	}
}
