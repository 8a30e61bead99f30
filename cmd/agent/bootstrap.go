package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloudpipe/cloudpipe/provision"
)

var bootstrapCommand = &command{
	name:     "bootstrap",
	synopsis: "[--state-bucket B] [--cluster C] [--region R] [--subnets S --security-groups G]",
	summary:  "create the shared prerequisites (state bucket, cluster, network)",
	help: `Create what every pipeline of the region shares, idempotently, tagged
cloudpipe:managed=true: the state bucket (versioning, default encryption,
public access blocked, lifecycle rules that abort incomplete uploads after 7
days and expire run records after 90 days and old inventory versions after
30), ECS's service-linked role AWSServiceRoleForECS when the account lacks
it, the ECS cluster, and the network Fargate tasks run in.
Without --subnets, the default VPC's subnets are used with a new egress-only
security group "cloudpipe-tasks"; with neither flags nor a default VPC it
stops and says which flags to pass. The network choice is stored in the state
bucket so every later pass uses it. Prints what it created and what it found.

--region R prepares the cluster and network of another region, for workflows
whose "region" is R; the state bucket stays in the agent's region (AWS_REGION),
and R's network choice is stored there. Without it, the first pass that deploys
to R prepares R by the same rules, and fails naming this command when R has no
default VPC.`,
	flags: []string{"state-bucket", "cluster", "region", "subnets", "security-groups", "log-format", "log-level"},
	run:   runBootstrap,
}

func runBootstrap(ctx context.Context, cfg Config, _ []string, out streams) error {
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	prov := provision.New(sess.cfg, provision.Options{Cluster: cfg.Cluster, S3UsePathStyle: sess.pathStyle, Logger: log})
	region := cfg.Region
	if region == "" {
		region = sess.cfg.Region
	}
	res, err := prov.Bootstrap(ctx, region, provision.BootstrapOptions{
		StateBucket: sess.stateBucket, Cluster: cfg.Cluster,
		Subnets: cfg.Subnets, SecurityGroups: cfg.SecurityGroups,
	})
	for _, c := range res.Created {
		fmt.Fprintf(out.stdout, "created  %s\n", c)
	}
	for _, u := range res.Updated {
		fmt.Fprintf(out.stdout, "updated  %s\n", u)
	}
	for _, f := range res.Found {
		fmt.Fprintf(out.stdout, "found    %s\n", f)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out.stdout, "region %s: state bucket s3://%s (in %s), cluster %s, subnets %s, security groups %s, public IP %v\n",
		region, res.StateBucket, sess.cfg.Region, cfg.Cluster, strings.Join(res.Network.Subnets, ","), strings.Join(res.Network.SecurityGroups, ","), res.Network.AssignPublicIP)
	return nil
}
