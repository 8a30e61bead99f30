package sync_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// applyKey identifies one apply: a workflow, the commit being reconciled
// and what was done.
type applyKey struct {
	workflow, commit string
	action           pipesync.Action
}

// raceLedger records what two racing agents did, from their OnEvent and
// OnPlan callbacks.
type raceLedger struct {
	mu       sync.Mutex
	commit   string
	applies  map[applyKey]int
	failures []string
	plans    map[string]int // plans computed, by agent: one per pass plus one per re-plan
	byAgent  map[string]int // successful applies, by agent
}

func (l *raceLedger) options(e *env, agentID string) pipesync.Options {
	return pipesync.Options{
		Provisioner: e.prov, Inventory: e.inv, AgentID: agentID, Concurrency: 4,
		OnEvent: func(ev pipesync.Event) {
			if !ev.Done {
				return
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if ev.Err != nil {
				l.failures = append(l.failures, fmt.Sprintf("%s: %s %s by %s: %v", l.commit, ev.Workflow, ev.Action, agentID, ev.Err))
				return
			}
			l.applies[applyKey{ev.Workflow, l.commit, ev.Action}]++
			l.byAgent[agentID]++
		},
		OnPlan: func(*pipesync.Plan) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.plans[agentID]++
		},
	}
}

// TestRaceTwoAgentsManyCommits runs two agents (different IDs) on one state
// bucket for 20 commits. Each commit changes two workflows, adds one and
// removes one, and both agents reconcile it at the same moment. Every change
// must be applied exactly once, by one agent or the other (the loser of the
// inventory race skips what the winner holds, or finds it done), and no
// inventory write may be lost: after each round the index and every record
// show each desired workflow ready at its new spec hash.
func TestRaceTwoAgentsManyCommits(t *testing.T) {
	t.Parallel() // one of the long tests run side by side (see TestDeploy100)
	if testing.Short() {
		t.Skip("20 rounds of two agents against kumo")
	}
	rounds := 20
	if *faultsLong {
		rounds = 60
	}
	e := newEnv(t)
	ledger := &raceLedger{applies: map[applyKey]int{}, plans: map[string]int{}, byAgent: map[string]int{}}
	agents := map[string]*pipesync.Reconciler{}
	for _, id := range []string{"agent-a", "agent-b"} {
		agents[id] = mustReconciler(ledger.options(e, id))
	}

	var all []testWorkflow // every workflow ever in the repository, for the audit
	present := map[string]testWorkflow{}
	mode := map[string]string{}
	added := 0
	add := func() {
		w := testWorkflow{name: e.name(fmt.Sprintf("r%02d", added)), in: e.name(fmt.Sprintf("r%02d-in", added)),
			out: e.name(fmt.Sprintf("r%02d-out", added)), stages: 1}
		if added%4 == 3 {
			w.stages = 3
		}
		added++
		all = append(all, w)
		present[w.name] = w
		mode[w.name] = "m0"
	}
	for range 6 {
		add()
	}

	deployed := map[string]string{} // workflow -> spec hash after the last round
	skips := map[string]int{}
	var applied, unchanged int
	start := time.Now()
	for round := range rounds + 1 {
		commit := fmt.Sprintf("c%02d", round)
		if round > 0 {
			// Change two workflows, remove the oldest, add one.
			names := slices.Sorted(maps.Keys(present))
			for _, n := range []string{names[(2*round)%len(names)], names[(2*round+1)%len(names)]} {
				mode[n] = fmt.Sprintf("m%d", round)
			}
			delete(present, names[0])
			add()
		}
		files := map[string]string{}
		for n, w := range present {
			files[n] = w.file(mode[n])
		}
		desired := pipesync.LoadDesired(repo(files), commit)
		if len(desired.Problems) > 0 {
			t.Fatalf("test files invalid: %v", desired.Problems)
		}
		want := map[string]string{}
		expected := map[applyKey]bool{}
		for _, w := range desired.Workflows {
			want[w.Name] = w.SpecHash
			switch old, ok := deployed[w.Name]; {
			case !ok:
				expected[applyKey{w.Name, commit, pipesync.Create}] = true
			case old != w.SpecHash:
				expected[applyKey{w.Name, commit, pipesync.Update}] = true
			}
		}
		for n := range deployed {
			if _, ok := want[n]; !ok {
				expected[applyKey{n, commit, pipesync.Delete}] = true
			}
		}

		// Both agents start together, on the same commit.
		ledger.mu.Lock()
		ledger.commit = commit
		ledger.mu.Unlock()
		reports := map[string]*pipesync.Report{}
		var rmu sync.Mutex
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for id, r := range agents {
			wg.Go(func() {
				<-gate
				rep, err := r.Reconcile(t.Context(), desired)
				if err != nil {
					t.Errorf("%s: %s: reconcile: %v", commit, id, err)
					return
				}
				rmu.Lock()
				reports[id] = rep
				rmu.Unlock()
			})
		}
		close(gate)
		wg.Wait()

		// Every change applied exactly once, nothing else applied.
		ledger.mu.Lock()
		for k := range expected {
			if n := ledger.applies[k]; n != 1 {
				t.Errorf("%s: %s %s applied %d times, want once", commit, k.workflow, k.action, n)
			}
		}
		for k, n := range ledger.applies {
			if k.commit == commit && !expected[k] {
				t.Errorf("%s: %s %s applied %d times, but the commit does not change it", commit, k.workflow, k.action, n)
			}
		}
		for _, f := range ledger.failures {
			t.Errorf("failed apply: %s", f)
		}
		ledger.failures = nil
		ledger.mu.Unlock()
		applied += len(expected)
		for id, rep := range reports {
			for _, res := range rep.Results {
				switch res.Action {
				case pipesync.Skip:
					skips[id]++
				case pipesync.Unchanged:
					unchanged++
				}
			}
		}

		// No lost write: the index and records show this round's outcome.
		idx, err := e.inv.ReadIndex(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if idx.Commit != commit {
			t.Errorf("%s: index at commit %s", commit, idx.Commit)
		}
		for n, hash := range want {
			entry, ok := idx.Workflows[n]
			if !ok || entry.State != inventory.StateReady || entry.SpecHash != hash || entry.Holder != "" {
				t.Errorf("%s: index entry of %s: %+v, want ready at %.8s with no lease (lost write?)", commit, n, entry, hash)
				continue
			}
			rec, err := e.inv.ReadRecord(t.Context(), n)
			if err != nil || rec.State != inventory.StateReady || rec.SpecHash != hash || rec.Commit != entry.Commit {
				t.Errorf("%s: record of %s: %v %+v, want ready at %.8s, commit %s", commit, n, err, rec, hash, entry.Commit)
			}
		}
		for n := range deployed {
			if _, ok := want[n]; ok {
				continue
			}
			if _, ok := idx.Workflows[n]; ok {
				t.Errorf("%s: deleted %s still in the index", commit, n)
			}
			if _, err := e.inv.ReadRecord(t.Context(), n); !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("%s: deleted %s still has a record: %v", commit, n, err)
			}
		}
		// The full audit reads every resource: every fifth round and the last.
		if round%5 == 0 || round == rounds {
			missing, orphans := e.audit(all, want)
			for _, m := range missing {
				t.Errorf("%s: missing %s", commit, m)
			}
			for _, o := range orphans {
				t.Errorf("%s: orphan %s", commit, o)
			}
			for _, d := range e.duplicates(all, want) {
				t.Errorf("%s: duplicate %s", commit, d)
			}
		}
		deployed = want
		if t.Failed() {
			t.Fatalf("stopping after round %s", commit)
		}
	}
	passes := 2 * (rounds + 1)
	replans := ledger.plans["agent-a"] + ledger.plans["agent-b"] - passes
	t.Logf("%d commits in %v: %d changes, each applied exactly once (agent-a %d, agent-b %d applies); "+
		"skips (held by the other agent) a=%d b=%d; unchanged results %d; re-plans after a lost index race %d; no lost write",
		rounds+1, time.Since(start).Round(time.Millisecond), applied, ledger.byAgent["agent-a"], ledger.byAgent["agent-b"],
		skips["agent-a"], skips["agent-b"], unchanged, replans)
}
