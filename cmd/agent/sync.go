package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

var syncCommand = &command{
	name:     "sync",
	synopsis: "--once --repo R",
	summary:  "run one reconcile pass and print a summary",
	help: `Run one reconcile pass: read the config repository at the branch head,
validate it, plan against the inventory, apply the plan (several workflows at
a time, --concurrency) and print one line per workflow. Progress goes to
stderr as each workflow starts and finishes. The continuous daemon is
'agent run'; sync always does exactly one pass.

Exit status: 0 every workflow is as the repository says, 1 a workflow failed
or a file is invalid (its deployed version, if any, is kept).`,
	flags: []string{"once", "repo", "branch", "state-bucket", "cluster", "subnets", "security-groups",
		"concurrency", "agent-id", "runner-image", "cache-dir", "notify-url", "notify-url-secret-arn", "log-format", "log-level"},
	run: runSync,
}

func runSync(ctx context.Context, cfg Config, _ []string, out streams) error {
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	exe, err := findAgentExecutable()
	if err != nil {
		return err
	}
	repo, err := openRepo(ctx, cfg)
	if err != nil {
		return err
	}
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	prov, err := sess.provisioner(ctx, cfg, log, exe)
	if err != nil {
		return err
	}
	// An instance type missing from cloudpipe's table is asked of EC2.
	repo.UseInstanceTypes(prov)
	desired, err := repo.Load(ctx, "")
	if err != nil {
		return err
	}
	var mu sync.Mutex // progress lines come from the applying goroutines
	r, err := pipesync.New(pipesync.Options{
		Provisioner: prov,
		Inventory:   newInventory(sess),
		AgentID:     cfg.AgentID,
		Release:     exe.release(cfg),
		Concurrency: cfg.Concurrency,
		Logger:      log,
		OnEvent: func(e pipesync.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !e.Done:
				fmt.Fprintf(out.stderr, "%s: %s...\n", e.Workflow, e.Action)
			case e.Err != nil:
				fmt.Fprintf(out.stderr, "%s: %s failed\n", e.Workflow, e.Action)
			default:
				fmt.Fprintf(out.stderr, "%s: %s done\n", e.Workflow, e.Action)
			}
		},
	})
	if err != nil {
		return err
	}
	notifier, err := newNotifier(ctx, cfg, sess.cfg, nil, log)
	if err != nil {
		return err
	}
	rep, err := r.Reconcile(ctx, desired)
	if notifier != nil && rep != nil {
		for _, e := range pipesync.ReportEvents(rep, time.Now()) {
			notifier.Notify(e)
		}
	}
	closeNotifier(ctx, notifier, log)
	return writeReport(rep, err, out)
}

func newInventory(s *awsSession) *inventory.Store {
	return inventory.NewStore(s.cfg, s.stateBucket, s.pathStyle)
}

// writeReport prints a pass's report table, if it got that far, and turns
// its outcome into the command's: err, or errReported when a workflow
// failed.
func writeReport(rep *pipesync.Report, err error, out streams) error {
	if rep != nil {
		if werr := rep.WriteTable(out.stdout); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if rep.Failed() > 0 {
		return errReported
	}
	return nil
}
