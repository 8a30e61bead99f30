package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

var planCommand = &command{
	name:     "plan",
	synopsis: "--repo R [--ref REF]",
	summary:  "show what a sync would create, update and delete",
	help: `Read the config repository at the branch head (or --ref), validate it, compare
it with the inventory in the state bucket and print the plan: one line per
workflow with its action (+ create, ~ update, - delete, = unchanged,
! invalid, ? held by another agent) and the reason, and under each workflow
created or updated one line per stage saying where it runs, e.g. "stage 0
sort-lines: Fargate 1 vCPU/2 GiB (t2.micro)" or "stage 1 gpu: AWS Batch
g5.xlarge on spot, 4 vCPU/16 GiB, 1 GPU (Fargate has no GPU)". An
algorithm's instance type missing from cloudpipe's table is asked of EC2
(ec2:DescribeInstanceTypes). Then, for each other
region than the agent's that a workflow is created or updated in, a line when
the pass would first prepare it, e.g. "region eu-west-1: would create cluster
cloudpipe and use the default VPC vpc-1" (see bootstrap --region). With
--drift the deployed pipelines the plan leaves unchanged are also compared
with AWS, as the agent's drift check does: each resource deleted or setting
changed outside cloudpipe is a line of its own, e.g. "~ drift  wf: sqs queue
cp-wf-0 VisibilityTimeout 1200 → 30 (changed outside cloudpipe)", and the
workflow an update that repairs it. Nothing is written.

Exit status: 0 the plan was made (even if files are invalid: they are shown
as "!" lines), 1 the repository or the inventory could not be read.`,
	flags: []string{"repo", "branch", "ref", "drift", "state-bucket", "cluster", "subnets", "security-groups", "agent-id", "cache-dir", "log-format", "log-level"},
	run:   runPlan,
}

func runPlan(ctx context.Context, cfg Config, _ []string, out streams) error {
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	repo, err := openRepo(ctx, cfg)
	if err != nil {
		return err
	}
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	prov := provision.New(sess.cfg, provision.Options{
		Cluster: cfg.Cluster, StateBucket: sess.stateBucket, S3UsePathStyle: sess.pathStyle, Logger: log,
	})
	// An instance type missing from cloudpipe's table is asked of EC2.
	repo.UseInstanceTypes(prov)
	desired, err := repo.Load(ctx, cfg.Ref)
	if err != nil {
		return err
	}
	// A plan needs the inventory, and a provisioner only to ask EC2 about
	// instance types and to read what other regions have: no reconciler.
	idx, err := newInventory(sess).ReadIndex(ctx)
	if err != nil {
		return err
	}
	// No release: a plan shows what the workflow files change. Run where
	// a reviewer runs it, this binary is rarely the deployed agent's, and
	// comparing them would list every workflow as an upgrade.
	plan := pipesync.ComputePlan(desired, idx, pipesync.AgentID(cfg.AgentID), "", time.Now())
	if cfg.Drift {
		if err := checkDrift(ctx, cfg, sess, log, plan); err != nil {
			return err
		}
	}
	log.Debug("plan made", "commit", desired.Commit, "summary", plan.Summary())
	if err := plan.WritePlan(out.stdout); err != nil {
		return err
	}
	regions := plan.Regions(sess.cfg.Region)
	if len(regions) == 0 {
		return nil
	}
	for _, region := range regions {
		line, err := prov.PlanRegion(ctx, region)
		if err != nil {
			return err
		}
		if line != "" {
			fmt.Fprintln(out.stdout, line)
		}
	}
	return nil
}

// checkDrift adds to plan what the agent's drift check would find, with a
// provisioner set up as the agent's (the stored network, or --subnets):
// the stage functions' wanted configuration names it. It only reads.
func checkDrift(ctx context.Context, cfg Config, sess *awsSession, log *slog.Logger, plan *pipesync.Plan) error {
	// No code is built or uploaded by a drift check: the executable is
	// never read.
	prov, err := sess.provisioner(ctx, cfg, log, agentExecutable{})
	if err != nil {
		return err
	}
	r, err := pipesync.New(pipesync.Options{Provisioner: prov, Inventory: newInventory(sess), AgentID: cfg.AgentID, Logger: log})
	if err != nil {
		return err
	}
	if err := r.CheckDrift(ctx, plan); err != nil {
		return fmt.Errorf("drift check: %w", err)
	}
	return nil
}
