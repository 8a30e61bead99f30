package main

import (
	"context"
	"time"

	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

var statusCommand = &command{
	name:     "status",
	synopsis: "[--json] [WORKFLOW...]",
	summary:  "show what is deployed and how its files are doing",
	help: `Print every workflow the inventory in the state bucket records, or only the
WORKFLOWs named: its state (applying, deleting, ready, failed, torn-down),
the commit it was deployed from, its input and output buckets, files done and
failed (from the run records: DONE counts the last stage's successful runs,
FAILED every failed run, one per failed delivery), files WAITING in the work
queues ("3+1": 3 queued, 1 being worked on), DEAD letters in the dead-letter
queues, when the agent tries a failed apply again, and the last error (of
the apply, else of the newest failed run). A workflow of several stages gets
one indented line per stage. With --json, one JSON array of objects with the
fields workflow, state, commit, region, input_bucket, output_bucket, done,
failed, waiting, in_flight, dead_letters, error, next_retry,
last_run_error, last_run_error_at, updated_at and stages (each: stage,
algorithm, input_bucket, output_bucket, done, failed, waiting, in_flight,
dead_letters, error); times are RFC 3339, empty fields are left out.

It reads the state bucket (s3:ListBucket, s3:GetObject) and the queues
(sqs:GetQueueAttributes) and nothing else, so a role with only
deploy/status-readonly-policy.json may run it. Queue counts are SQS's approximate ones.

Exit status: 0 printed, 1 a WORKFLOW the inventory does not have, or
something could not be read (what could be is printed).`,
	flags: []string{"json", "state-bucket", "cluster", "log-format", "log-level"},
	run:   runStatus,
}

func runStatus(ctx context.Context, cfg Config, args []string, out streams) error {
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	inv := newInventory(sess)
	// Reading queues needs no network and no code: a bare provisioner.
	prov := provision.New(sess.cfg, provision.Options{Cluster: cfg.Cluster, StateBucket: sess.stateBucket,
		S3UsePathStyle: sess.pathStyle, Logger: log.With("component", "provision")})
	statuses, err := pipesync.Status(ctx, pipesync.StatusSource{Inventory: inv, Runs: inv, Queues: prov}, args)
	if statuses == nil && err != nil {
		return err
	}
	if cfg.JSON {
		if werr := pipesync.WriteStatusJSON(out.stdout, statuses); werr != nil {
			return werr
		}
	} else if werr := pipesync.WriteStatusTable(out.stdout, statuses, time.Now()); werr != nil {
		return werr
	}
	return err
}
