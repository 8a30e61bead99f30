package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// Regions. The agent, its state bucket and its own region's cluster and
// network are where bootstrap made them. A workflow may name another region:
// its stages run there, so that region needs the same shared prerequisites,
// an ECS cluster (clusters are regional) and a network (subnets and
// security groups are regional) — and they are made on first use by the
// rules of Bootstrap, or beforehand by `agent bootstrap --region R`. The
// state bucket stays in the agent's region, and so does the record of each
// region's network.

// regionNetwork returns the network stage tasks of region run in. The
// agent's own region uses Options.Network as before; another region is
// prepared once per Provisioner (PrepareRegion), then its network is
// reused.
func (p *Provisioner) regionNetwork(ctx context.Context, region string) (Network, error) {
	if region == "" || region == p.cfg.Region {
		return p.opts.Network, nil
	}
	p.prepMu.Lock()
	defer p.prepMu.Unlock()
	if net, ok := p.networks[region]; ok {
		return net, nil
	}
	res, err := p.PrepareRegion(ctx, region)
	if err != nil {
		return Network{}, err
	}
	p.networks[region] = res.Network
	for _, c := range res.Created {
		p.log.InfoContext(ctx, "region prepared", "region", region, "created", c)
	}
	return res.Network, nil
}

// PrepareRegion makes sure region has what its stages share, as Bootstrap
// would make it there: the cluster (Options.Cluster), found or created, and
// the network stored in the state bucket for region, or, when none is
// stored, the default VPC's subnets with the "cloudpipe-tasks" security
// group, which it then stores so every later pass uses the same. Without a
// stored network or a default VPC it fails with an error matching
// ErrNoNetwork that names the bootstrap command to run.
func (p *Provisioner) PrepareRegion(ctx context.Context, region string) (BootstrapResult, error) {
	c := p.clients(region)
	r := BootstrapResult{StateBucket: p.opts.StateBucket}
	tags := map[string]string{TagManaged: "true"}
	if err := ensureCluster(ctx, c, p.opts.Cluster, tags, &r); err != nil {
		return r, fmt.Errorf("prepare region %s: %w", region, err)
	}
	if p.opts.StateBucket != "" {
		net, err := p.LoadNetwork(ctx, region, p.opts.StateBucket)
		if err == nil {
			r.Network = net
			r.Found = append(r.Found, "s3 object s3://"+p.opts.StateBucket+"/"+p.NetworkKey(region))
			return r, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return r, fmt.Errorf("prepare region %s: %w", region, err)
		}
	}
	net, err := resolveNetwork(ctx, c, BootstrapOptions{}, tags, &r)
	if errors.Is(err, ErrNoNetwork) {
		return r, fmt.Errorf("prepare region %s: %w; for this region run %s", region, err, bootstrapHint(region))
	}
	if err != nil {
		return r, fmt.Errorf("prepare region %s: %w", region, err)
	}
	r.Network = net
	if p.opts.StateBucket != "" {
		if err := storeNetwork(ctx, p.clients(""), p.opts.StateBucket, p.NetworkKey(region), net, &r); err != nil {
			return r, fmt.Errorf("prepare region %s: %w", region, err)
		}
	}
	return r, nil
}

// bootstrapHint is the command that prepares region by hand.
func bootstrapHint(region string) string {
	return "'agent bootstrap --region " + region + " --subnets SUBNETS --security-groups GROUPS'"
}

// PlanRegion says, without changing anything, what the first pass that
// deploys to region would prepare there: "" when nothing (its network is
// stored and its cluster active), else one line such as "region eu-west-1:
// would create cluster cloudpipe and use the default VPC vpc-1". The
// agent's own region is bootstrap's and never planned.
func (p *Provisioner) PlanRegion(ctx context.Context, region string) (string, error) {
	if region == "" || region == p.cfg.Region {
		return "", nil
	}
	c := p.clients(region)
	var would []string
	out, err := c.ecs.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{p.opts.Cluster}})
	if err != nil {
		return "", fmt.Errorf("plan region %s: describe clusters %s: %w", region, p.opts.Cluster, err)
	}
	active := false
	for _, cl := range out.Clusters {
		active = active || (aws.ToString(cl.ClusterName) == p.opts.Cluster && aws.ToString(cl.Status) == "ACTIVE")
	}
	if !active {
		would = append(would, "create cluster "+p.opts.Cluster)
	}
	stored := false
	if p.opts.StateBucket != "" {
		_, err := p.LoadNetwork(ctx, region, p.opts.StateBucket)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("plan region %s: %w", region, err)
		}
		stored = err == nil
	}
	if !stored {
		vpc, err := findDefaultVPC(ctx, c)
		switch {
		case errors.Is(err, ErrNotFound):
			return "region " + region + ": no stored network and no default VPC: run " + bootstrapHint(region) + " first", nil
		case err != nil:
			return "", fmt.Errorf("plan region %s: %w", region, err)
		}
		would = append(would, "use the default VPC "+vpc)
	}
	if len(would) == 0 {
		return "", nil
	}
	return "region " + region + ": would " + strings.Join(would, " and "), nil
}

// stateRegion is the state bucket's region for the runners' environment:
// the agent's, or "" without a state bucket.
func (p *Provisioner) stateRegion() string {
	if p.opts.StateBucket == "" {
		return ""
	}
	return p.cfg.Region
}
