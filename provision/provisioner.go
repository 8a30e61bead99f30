package provision

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultCluster               = "cloudpipe"
	DefaultLogRetentionDays      = 30
	DefaultIAMPropagationTimeout = 2 * time.Minute
	// DefaultExpectedRunTime is the run time assumed for an algorithm whose
	// spec gives none; the queue's visibility timeout is set above it.
	DefaultExpectedRunTime = 15 * time.Minute
)

// Options configure a Provisioner. The zero value works, with the defaults
// above, except that EnsureStage needs LambdaCode and RunnerImage.
type Options struct {
	Cluster string // ECS cluster name, in every region; default "cloudpipe"
	// Network holds the subnets and security groups for RunTask in the
	// agent's region (the config's), passed to each Lambda. Other regions'
	// come from the state bucket, or are chosen on first use (PrepareRegion).
	Network Network
	// StateBucket holds the inventory and run records, in the agent's
	// region; the task role may PutObject under runs/<workflow>/ in it.
	// Empty: that statement is left out.
	StateBucket string
	// LambdaCode is the deployment package of every stage function: a zip
	// holding an executable named bootstrap (see LambdaCodeFromFile).
	LambdaCode *LambdaCode
	// LambdaArchitecture is "x86_64" or "arm64", the architecture of the
	// binary in LambdaCode; default: that of the running agent (arm64 when
	// built for arm64, else x86_64), since the agent zips its own executable.
	LambdaArchitecture string
	// RunnerImage is the image of the init container that runs
	// `agent runner install /cloudpipe`.
	RunnerImage      string
	LogRetentionDays int32 // retention of the log groups; default 30
	S3UsePathStyle   bool  // path-style S3 addressing, for emulators
	// Logger gets a Debug record per AWS call and per retry; nil discards.
	Logger *slog.Logger
	// IAMPropagationTimeout caps the retries that wait for a new role to
	// become usable; default 2 minutes.
	IAMPropagationTimeout time.Duration
	// Sleep waits out a queue name SQS does not yet give back after a
	// DeleteQueue (see createQueue); default: a timer that ctx cancels.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Network is where stage tasks run: RunTask's awsvpc configuration.
type Network struct {
	Subnets        []string `json:"subnets"`
	SecurityGroups []string `json:"security_groups"`
	AssignPublicIP bool     `json:"assign_public_ip"`
}

// Provisioner creates, updates and deletes the AWS resources of pipeline
// stages. It is safe for concurrent use; clients are made once per region.
type Provisioner struct {
	cfg  aws.Config
	opts Options
	log  *slog.Logger

	mu      sync.Mutex          // guards regions
	regions map[string]*clients // by region

	prepMu   sync.Mutex         // held while a region is prepared; guards networks
	networks map[string]Network // of the regions prepared, by region (region.go)

	deletedQueues queueDeletions

	typesMu sync.Mutex                       // guards types
	types   map[string]workflow.InstanceType // DescribeInstanceTypes answers, by name (instancetypes.go)
}

// clients is one region's set of service clients.
type clients struct {
	region string
	s3     *s3.Client
	sqs    *sqs.Client
	iam    *iam.Client
	lambda *lambda.Client
	ecs    *ecs.Client
	batch  *batch.Client
	logs   *cloudwatchlogs.Client
	ec2    *ec2.Client
	sts    *sts.Client
	// kms and secrets only read which keys a stage's data is encrypted
	// with (kms.go).
	kms     *kms.Client
	secrets *secretsmanager.Client

	// For createQueue: when this provisioner deleted each queue, how to
	// wait, and where to say so.
	deletedQueues *queueDeletions
	sleep         func(ctx context.Context, d time.Duration) error
	log           *slog.Logger
}

// transientCodes are client errors that only say "not now"; the standard
// retryer already covers throttling (Throttling, ThrottlingException,
// SlowDown, TooManyRequestsException, RequestLimitExceeded, ...) and 5xx.
var transientCodes = map[string]struct{}{
	"ConcurrentModification": {}, // IAM: another call is changing the same role
	"OperationAborted":       {}, // S3: "A conflicting conditional operation is currently in progress"
}

// NewRetryer returns the SDK standard retryer allowing 10 attempts, which
// also retries the transient conflicts in transientCodes, without the
// client-side retry quota. That quota (a token bucket each client shares
// across all its calls) is spent by a burst of throttling or timeouts, and
// then refuses every retry, "retry quota exceeded": one pass's calls for
// many workflows share a client, so a storm on some of them failed the
// others' calls that their next attempt would have carried, for passes on
// end. Backoff with jitter already spaces the retries out.
// https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
func NewRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 10
		o.MaxBackoff = 20 * time.Second
		o.RateLimiter = ratelimit.None
		o.Retryables = append(slices.Clip(o.Retryables), retry.RetryableErrorCode{Codes: transientCodes})
	})
}

// New returns a Provisioner using cfg (credentials, endpoint, HTTP client)
// for every region. It replaces cfg's retryer with the SDK standard retryer
// allowing 10 attempts, so throttling (ThrottlingException, SlowDown,
// TooManyRequestsException, ...) is retried with exponential backoff and
// jitter everywhere, as are the transient conflicts in transientCodes.
func New(cfg aws.Config, opts Options) *Provisioner {
	if opts.Cluster == "" {
		opts.Cluster = DefaultCluster
	}
	if opts.LogRetentionDays == 0 {
		opts.LogRetentionDays = DefaultLogRetentionDays
	}
	if opts.IAMPropagationTimeout == 0 {
		opts.IAMPropagationTimeout = DefaultIAMPropagationTimeout
	}
	if opts.Sleep == nil {
		opts.Sleep = backoff.Sleep
	}
	if opts.LambdaArchitecture == "" {
		opts.LambdaArchitecture = DefaultLambdaArchitecture()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "provision")

	cfg = cfg.Copy()
	cfg.Retryer = NewRetryer
	// Clip so that appending never writes into the caller's backing array.
	apiOpts := cfg.APIOptions[:len(cfg.APIOptions):len(cfg.APIOptions)]
	cfg.APIOptions = append(apiOpts, debugLogMiddleware(log))
	return &Provisioner{cfg: cfg, opts: opts, log: log, regions: map[string]*clients{}, networks: map[string]Network{},
		types: map[string]workflow.InstanceType{}}
}

// clients returns the service clients of region (the config's region when
// empty), creating them on first use.
func (p *Provisioner) clients(region string) *clients {
	if region == "" {
		region = p.cfg.Region
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.regions[region]; ok {
		return c
	}
	cfg := p.cfg.Copy()
	cfg.Region = region
	c := &clients{
		region:  region,
		s3:      s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = p.opts.S3UsePathStyle }),
		sqs:     sqs.NewFromConfig(cfg),
		iam:     iam.NewFromConfig(cfg),
		lambda:  lambda.NewFromConfig(cfg),
		ecs:     ecs.NewFromConfig(cfg),
		batch:   batch.NewFromConfig(cfg),
		logs:    cloudwatchlogs.NewFromConfig(cfg),
		ec2:     ec2.NewFromConfig(cfg),
		sts:     sts.NewFromConfig(cfg),
		kms:     kms.NewFromConfig(cfg),
		secrets: secretsmanager.NewFromConfig(cfg),

		deletedQueues: &p.deletedQueues,
		sleep:         p.opts.Sleep,
		log:           p.log,
	}
	p.regions[region] = c
	return c
}

// CallerAccount returns the account ID the credentials belong to (STS
// GetCallerIdentity in region).
func (p *Provisioner) CallerAccount(ctx context.Context, region string) (string, error) {
	out, err := p.clients(region).sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil && region != "" && region != p.cfg.Region && hasCode(err, "InvalidClientTokenId", "UnrecognizedClientException") {
		// An opt-in region the account has not enabled rejects the
		// credentials as unknown, naming no region; they work in the
		// agent's own region, so say what is likely.
		// https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html
		return "", fmt.Errorf("region %s rejects the agent's credentials, which %s accepts: the region is probably not enabled in this account "+
			"(an opt-in region); enable it in the account's settings, or deploy the workflow elsewhere: %w", region, p.cfg.Region, err)
	}
	if err != nil {
		return "", fmt.Errorf("get caller identity: %w", err)
	}
	return aws.ToString(out.Account), nil
}

// debugLogMiddleware logs every AWS call at Debug with its duration, the
// number of attempts the retryer made and the error, if any.
func debugLogMiddleware(log *slog.Logger) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("cloudpipe.DebugLog",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if !log.Enabled(ctx, slog.LevelDebug) {
					return next.HandleInitialize(ctx, in)
				}
				start := time.Now()
				out, md, err := next.HandleInitialize(ctx, in)
				attempts := 1
				if r, ok := retry.GetAttemptResults(md); ok && len(r.Results) > 0 {
					attempts = len(r.Results)
				}
				attrs := []any{
					"service", awsmiddleware.GetServiceID(ctx),
					"operation", awsmiddleware.GetOperationName(ctx),
					"duration", time.Since(start),
					"attempt", attempts,
				}
				if err != nil {
					attrs = append(attrs, "err", err)
				}
				log.DebugContext(ctx, "aws call", attrs...)
				return out, md, err
			}), middleware.After)
	}
}

// ReleaseCode drops the stage functions' deployment package until a pass
// needs it again (see LambdaCode.Release).
func (p *Provisioner) ReleaseCode() {
	if p.opts.LambdaCode != nil {
		p.opts.LambdaCode.Release()
	}
}

// LambdaZipFromFile returns a Lambda deployment package holding the file at
// path as "bootstrap" with mode 0755, as the provided.al2023 runtime expects.
// The archive carries no timestamps, so the same file always gives the same
// bytes and the same CodeSha256, and an unchanged agent never re-uploads its
// code.
func LambdaZipFromFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read lambda binary: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	hdr := &zip.FileHeader{Name: lambdaHandler, Method: zip.Deflate}
	hdr.SetMode(0o755)
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return nil, fmt.Errorf("zip lambda binary: %w", err)
	}
	// Streamed from the file: the binary is never held whole next to its zip.
	if _, err := io.Copy(w, f); err != nil {
		return nil, fmt.Errorf("zip lambda binary %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("zip lambda binary: %w", err)
	}
	return buf.Bytes(), nil
}
