package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

var teardownCommand = &command{
	name:     "teardown",
	synopsis: "[--yes] [WORKFLOW...]",
	summary:  "remove deployed pipelines (the original cloud_pipe's clean-up)",
	help: `Remove every pipeline the inventory in the state bucket records, or only the
WORKFLOWs named, as a sync removes the pipeline of a deleted workflow file:
the same resources go, and the same buckets stay (those that hold objects,
those cloudpipe did not create, and, unless the workflow said
"retain_buckets": false, its input and output buckets); the kept ones are
listed. Without --yes it prints the plan, one "- WORKFLOW delete" line each,
and changes nothing.

A running agent does not bring a torn-down pipeline back while its workflow
file is unchanged: the inventory records it as torn down ("x" in 'agent
plan'). The agent deploys it again when the file changes, and forgets it when
the file is removed. To be done with a pipeline for good, remove its file
too; to bring it back unchanged, remove the file in one commit and add it
back in a later one.

Exit status: 0 done (or planned), 1 a pipeline could not be torn down or the
inventory could not be read, 2 usage error (a WORKFLOW the inventory does not
have).`,
	flags: []string{"yes", "state-bucket", "cluster", "concurrency", "agent-id", "log-format", "log-level"},
	run:   runTeardown,
}

func runTeardown(ctx context.Context, cfg Config, args []string, out streams) error {
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	// Tearing down needs neither the network nor the stage functions'
	// code: a provisioner for deletes only.
	prov := provision.New(sess.cfg, provision.Options{
		Cluster: cfg.Cluster, StateBucket: sess.stateBucket, S3UsePathStyle: sess.pathStyle,
		Logger: log.With("component", "provision"),
	})
	var mu sync.Mutex // progress lines come from the applying goroutines
	r, err := pipesync.New(pipesync.Options{
		Provisioner: prov,
		Inventory:   newInventory(sess),
		AgentID:     cfg.AgentID,
		Concurrency: cfg.Concurrency,
		Logger:      log,
		OnEvent: func(e pipesync.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !e.Done:
				fmt.Fprintf(out.stderr, "%s: tearing down...\n", e.Workflow)
			case e.Err != nil:
				fmt.Fprintf(out.stderr, "%s: teardown failed\n", e.Workflow)
			default:
				fmt.Fprintf(out.stderr, "%s: torn down\n", e.Workflow)
			}
		},
	})
	if err != nil {
		return err
	}
	idx, err := r.Inventory().ReadIndex(ctx)
	if err != nil {
		return err
	}
	plan, err := r.TeardownPlan(idx, args)
	if err != nil {
		return usageError{err}
	}
	if !cfg.Yes {
		if err := plan.WritePlan(out.stdout); err != nil {
			return err
		}
		if plan.HasWrites() {
			fmt.Fprintln(out.stderr, "nothing changed: run again with --yes to tear these down")
		}
		return nil
	}
	rep, err := r.Teardown(ctx, args)
	return writeReport(rep, err, out)
}
