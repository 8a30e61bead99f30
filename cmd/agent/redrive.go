package main

import (
	"context"
	"fmt"

	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

var redriveCommand = &command{
	name:     "redrive",
	synopsis: "[--stage N] WORKFLOW",
	summary:  "send a workflow's dead letters back to its work queues and start tasks",
	help: `After fixing what made files fail (the algorithm, a permission, the input),
send the dead letters of WORKFLOW's stages (or of stage N only) back to each
stage's work queue and start tasks for them as the stage function does for
uploads, under the stage's max_tasks. A dead letter that is Lambda's record
of an S3 event the stage function failed becomes the work message of its
object. One line per stage says how many letters were moved, resumed (sent
by an earlier run that stopped before deleting them), how many tasks were
started, and how many were skipped: letters that name no object stay in the
dead-letter queue.

Each letter is moved once: an interrupted redrive leaves the letters it did
not finish in the dead-letter queue (visible again within a minute), and
running it again moves them without sending twice those already sent
(docs/design.md, "Status and redrive"). Run one redrive of a workflow at a time.

Exit status: 0 done, 1 a WORKFLOW the inventory does not have, or a
failure (the counts so far are printed), 2 usage error.`,
	flags: []string{"stage", "state-bucket", "cluster", "subnets", "security-groups", "log-format", "log-level"},
	run:   runRedrive,
}

func runRedrive(ctx context.Context, cfg Config, args []string, out streams) error {
	if len(args) != 1 {
		return usagef("want one WORKFLOW, got %d arguments", len(args))
	}
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	// Tasks start on the stored network, as the stage function's do; no
	// function is deployed, so no code is needed.
	prov, err := sess.provisioner(ctx, cfg, log, agentExecutable{})
	if err != nil {
		return err
	}
	inv := newInventory(sess)
	results, err := pipesync.Redrive(ctx, pipesync.RedriveOptions{
		Inventory: inv, Queues: prov, Journal: inv, Stage: cfg.Stage, Logger: log,
	}, args[0])
	if werr := pipesync.WriteRedriveTable(out.stdout, results); werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("redrive %s: %w", args[0], err)
	}
	return nil
}
