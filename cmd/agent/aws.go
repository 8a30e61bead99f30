package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// awsSession is the AWS side of a command: the SDK's default chain loaded
// once, and the state bucket it resolves to.
type awsSession struct {
	cfg         aws.Config
	pathStyle   bool // an emulator behind AWS_ENDPOINT_URL needs path-style S3
	stateBucket string
}

// loadAWS loads the SDK's default configuration chain (AWS_REGION,
// credentials, AWS_ENDPOINT_URL...) and resolves the state bucket, asking STS
// for the account only when --state-bucket is not given.
func loadAWS(ctx context.Context, cfg Config) (*awsSession, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("no AWS region: set AWS_REGION (the region of the state bucket and the cluster)")
	}
	s := &awsSession{
		cfg:         awsCfg,
		pathStyle:   os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != "",
		stateBucket: cfg.StateBucket,
	}
	if s.stateBucket == "" {
		account, err := provision.New(awsCfg, provision.Options{}).CallerAccount(ctx, awsCfg.Region)
		if err != nil {
			return nil, fmt.Errorf("find the AWS account for the default state bucket (or pass --state-bucket): %w", err)
		}
		s.stateBucket = provision.DefaultStateBucket(account, awsCfg.Region)
	}
	return s, nil
}

// provisioner returns a Provisioner for the agent, with exe, the agent's
// own executable, as the stage functions' code (docs/design.md, "One
// binary, three roles"); a zero exe for a command that starts tasks but
// deploys no function (redrive).
func (s *awsSession) provisioner(ctx context.Context, cfg Config, log *slog.Logger, exe agentExecutable) (*provision.Provisioner, error) {
	opts := provision.Options{
		LambdaArchitecture: exe.arch,
		Cluster:            cfg.Cluster,
		StateBucket:        s.stateBucket,
		RunnerImage:        cfg.RunnerImage,
		S3UsePathStyle:     s.pathStyle,
		Logger:             log.With("component", "provision"),
	}
	if exe.path != "" { // a command that deploys no function has none
		opts.LambdaCode = provision.LambdaCodeFromFile(exe.path, exe.sha256)
	}
	// Bootstrap stored its choice of network in the state bucket, so every
	// pass and every stage function uses the same one.
	stored, err := provision.New(s.cfg, opts).LoadNetwork(ctx, s.cfg.Region, s.stateBucket)
	if err != nil && !errors.Is(err, provision.ErrNotFound) {
		return nil, err
	}
	switch {
	case len(cfg.Subnets) > 0:
		// The flags win, with the public IP derived from the subnets as
		// bootstrap derives it.
		flags, err := provision.New(s.cfg, opts).NetworkFromFlags(ctx, s.cfg.Region, cfg.Subnets, cfg.SecurityGroups)
		if err != nil {
			return nil, fmt.Errorf("--subnets: %w", err)
		}
		if len(stored.Subnets) > 0 && flags.Differs(stored) {
			log.Warn("--subnets/--security-groups differ from the network bootstrap stored: tasks use the flags'",
				"state_bucket", s.stateBucket, "stored_subnets", stored.Subnets, "stored_security_groups", stored.SecurityGroups,
				"stored_public_ip", stored.AssignPublicIP, "subnets", flags.Subnets, "security_groups", flags.SecurityGroups,
				"public_ip", flags.AssignPublicIP)
		}
		opts.Network = flags
	case len(stored.Subnets) == 0:
		return nil, fmt.Errorf("no network settings in s3://%s: run 'agent bootstrap' first, or pass --subnets and --security-groups", s.stateBucket)
	default:
		opts.Network = stored
	}
	return provision.New(s.cfg, opts), nil
}

// agentExecutable is the running agent's executable, which the stage
// functions run as their code.
type agentExecutable struct {
	path   string
	sha256 string // hex SHA-256 of the file: it names the release and the code's S3 object
	arch   string // the Lambda architecture the functions run on
}

// findAgentExecutable finds the agent's executable and checks that Lambda
// can run it, before run or sync changes anything: a laptop's `go run`
// build (macOS, or dynamically linked by cgo) would deploy stage functions
// that cannot start, so the agent refuses it and says what to build
// instead.
func findAgentExecutable() (agentExecutable, error) {
	exe, err := os.Executable()
	if err != nil {
		return agentExecutable{}, fmt.Errorf("find the agent's executable for the Lambda code: %w", err)
	}
	arch := provision.DefaultLambdaArchitecture()
	if err := provision.CheckLambdaExecutable(exe, arch); err != nil {
		return agentExecutable{}, err
	}
	sum, err := provision.FileSHA256(exe)
	if err != nil {
		return agentExecutable{}, fmt.Errorf("read the agent's executable: %w", err)
	}
	return agentExecutable{path: exe, sha256: sum, arch: arch}, nil
}

// release names what this agent deploys besides the workflow files: the
// stage functions' code, which is this executable, and the runner image.
// sync compares it with the release each workflow was deployed under, so
// an upgraded agent (or another --runner-image) brings every pipeline to
// itself on its first pass (sync.Options.Release).
func (e agentExecutable) release(cfg Config) string {
	sum := sha256.Sum256([]byte(e.sha256 + "\x00runner-image=" + cfg.RunnerImage))
	return hex.EncodeToString(sum[:])[:16]
}

// openRepo opens --repo: a local directory (a Git repository or a plain
// directory) or a remote URL cloned into the cache directory.
func openRepo(ctx context.Context, cfg Config) (*pipesync.Repo, error) {
	return openRepoWithAuth(ctx, cfg, gitAuth{})
}

// gitAuth is how the agent authenticates to an HTTP(S) config repository:
// with a fixed token (CLOUDPIPE_GITHUB_TOKEN), with the tokens of a source
// asked before every fetch (a GitHub App's installation tokens, which last
// an hour), or, when both are zero, anonymously.
type gitAuth struct {
	token  secret.Value
	tokens gitsource.TokenSource
}

// openRepoWithAuth is openRepo with credentials for HTTP(S) remotes; they
// are dropped for any other URL (ssh has its own keys).
func openRepoWithAuth(ctx context.Context, cfg Config, auth gitAuth) (*pipesync.Repo, error) {
	cache := cfg.CacheDir
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		cache = filepath.Join(dir, "cloudpipe", "git")
	}
	o := gitsource.Options{URL: cfg.Repo, Branch: cfg.Branch, CacheDir: cache}
	if isHTTPURL(cfg.Repo) {
		o.Token, o.TokenSource = auth.token, auth.tokens
	}
	return pipesync.OpenRepo(ctx, o)
}

// isHTTPURL reports whether a --repo URL is fetched over HTTP(S), where a
// token is sent.
func isHTTPURL(repo string) bool {
	return strings.HasPrefix(repo, "https://") || strings.HasPrefix(repo, "http://")
}
