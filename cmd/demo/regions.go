package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// Regions. A workflow may name a region other than the agent's: its
// buckets, queues, function and tasks live there, and answer only requests
// signed for that region (the AWS rules in front of kumo refuse the others,
// as AWS does). The state bucket stays in the agent's region. So every
// client the demo makes is made for a region, and each region a workflow
// names is prepared as an operator prepares it with `agent bootstrap
// --region R`: kumo has no default VPC, from which the agent would
// otherwise take the region's network on first use.

// operator holds the operator's clients (uploads, results, the demo's
// watching), one per service and region. IAM does not check them.
type operator struct {
	cfg aws.Config

	mu  sync.Mutex
	s3  map[string]*s3.Client
	sqs map[string]*sqs.Client
}

func newOperator(cfg aws.Config) *operator {
	return &operator{cfg: cfg, s3: map[string]*s3.Client{}, sqs: map[string]*sqs.Client{}}
}

// in returns the operator's configuration signed for region ("" for the
// agent's).
func (o *operator) in(region string) aws.Config {
	cfg := o.cfg.Copy()
	if region != "" {
		cfg.Region = region
	}
	return cfg
}

// s3In is the operator's S3 client for the buckets of region.
func (o *operator) s3In(region string) *s3.Client {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.s3[region]; ok {
		return c
	}
	c := s3.NewFromConfig(o.in(region), func(opts *s3.Options) { opts.UsePathStyle = true })
	o.s3[region] = c
	return c
}

// sqsIn is the operator's SQS client for the queues of region.
func (o *operator) sqsIn(region string) *sqs.Client {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.sqs[region]; ok {
		return c
	}
	c := sqs.NewFromConfig(o.in(region))
	o.sqs[region] = c
	return c
}

// regionPrep prepares the regions workflows name besides the agent's, each
// once: a network made for the purpose (createNetwork, in that region) and
// the agent's bootstrap for the region, which creates the region's cluster
// and stores the network in the state bucket, where the agent's first pass
// that deploys there finds it.
type regionPrep struct {
	d           *demo
	stateBucket string

	mu       sync.Mutex // held while a region is prepared: one at a time
	prepared map[string]bool
}

func newRegionPrep(d *demo, stateBucket string) *regionPrep {
	return &regionPrep{d: d, stateBucket: stateBucket, prepared: map[string]bool{region: true}}
}

// prepare prepares region unless it is the agent's or prepared already.
func (r *regionPrep) prepare(ctx context.Context, reg string) error {
	if reg == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prepared[reg] {
		return nil
	}
	subnets, groups, err := r.d.createNetwork(ctx, reg)
	if err != nil {
		return fmt.Errorf("prepare region %s: %w", reg, err)
	}
	// As `agent bootstrap --region R` does it (cmd/agent/bootstrap.go):
	// the agent's credentials and region, the region to prepare as an
	// argument.
	_, err = provision.New(r.d.agentCfg, provision.Options{S3UsePathStyle: true, Logger: r.d.log.With("component", "provision")}).
		Bootstrap(ctx, reg, provision.BootstrapOptions{StateBucket: r.stateBucket, Subnets: subnets, SecurityGroups: groups})
	if err != nil {
		return fmt.Errorf("prepare region %s: %w", reg, err)
	}
	r.prepared[reg] = true
	r.d.out.printf("bootstrap --region %s: cluster %s, subnet %s, security group %s (network stored in s3://%s)\n",
		reg, provision.DefaultCluster, strings.Join(subnets, ","), strings.Join(groups, ","), r.stateBucket)
	return nil
}

// prepareRepo prepares every region a valid workflow of the config
// repository at dir names, before the agent's first pass.
func (r *regionPrep) prepareRepo(ctx context.Context, dir string) error {
	cfg, _ := workflow.Load(os.DirFS(dir)) // the pass reports the problems
	var regions []string
	for _, w := range cfg.Workflows {
		regions = append(regions, w.Region)
	}
	slices.Sort(regions)
	for _, reg := range slices.Compact(regions) {
		if err := r.prepare(ctx, reg); err != nil {
			return err
		}
	}
	return nil
}

// preparingProvisioner is the agent's provisioner with the demo standing
// in for the operator who, having committed a workflow in a new region,
// runs `agent bootstrap --region R` before the agent deploys it: a stage
// of a region not prepared yet has its region prepared first. Without
// this a commit that adds a region would fail to deploy (kumo has no
// default VPC) until the demo is restarted.
type preparingProvisioner struct {
	*provision.Provisioner
	regions *regionPrep
}

func (p preparingProvisioner) EnsureStage(ctx context.Context, spec provision.StageSpec, prev provision.StageResources) (provision.StageResources, error) {
	if err := p.regions.prepare(ctx, spec.Region); err != nil {
		return prev, err
	}
	return p.Provisioner.EnsureStage(ctx, spec, prev)
}
