package sync_test

// Unit tests of the reconcile state machine: the intent recorded before any
// AWS call, leases between agents, resuming an interrupted apply, re-planning
// after losing the index to another agent, failures and deletes. They run
// against inventory.Memory (whose behaviour the inventory package's
// conformance tests hold to the S3 store's) and a provisioner that records
// what it is asked, so they need no emulator; env_test.go's tests cover the
// same machine against kumo.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// recordingProvisioner answers like a provisioner whose every call succeeds
// unless fail says otherwise, and records the calls it gets.
type recordingProvisioner struct {
	account string
	// fail, if set, is asked before each ensure and delete ("ensure" or
	// "delete", workflow, stage); a non-nil error fails the call.
	fail func(op, workflow string, stage int) error
	// missing lists what MissingResources reports, by workflow.
	missing map[string][]string

	mu    gosync.Mutex
	calls []string // "ensure wf/0", "delete wf/1", ...
}

var _ pipesync.Provisioner = (*recordingProvisioner)(nil)

func (p *recordingProvisioner) CallerAccount(context.Context, string) (string, error) {
	return p.account, nil
}

func (p *recordingProvisioner) record(op string, spec provision.StageSpec) error {
	p.mu.Lock()
	p.calls = append(p.calls, fmt.Sprintf("%s %s/%d", op, spec.Workflow, spec.Stage))
	p.mu.Unlock()
	if p.fail != nil {
		return p.fail(op, spec.Workflow, spec.Stage)
	}
	return nil
}

func (p *recordingProvisioner) EnsureStage(_ context.Context, spec provision.StageSpec, prev provision.StageResources) (provision.StageResources, error) {
	res := prev
	res.InputBucket, res.OutputBucket = spec.InputBucket, spec.OutputBucket
	if err := p.record("ensure", spec); err != nil {
		return res, err
	}
	res.QueueURL = "https://sqs/" + provision.ResourceName(spec.Workflow, spec.Stage)
	return res, nil
}

// DeleteBatchCapacity records "delete-capacity <capacity>" and reports it
// done.
func (p *recordingProvisioner) DeleteBatchCapacity(_ context.Context, k provision.BatchCapacity) ([]string, bool, error) {
	p.mu.Lock()
	p.calls = append(p.calls, "delete-capacity "+k.String())
	p.mu.Unlock()
	return nil, true, nil
}

func (p *recordingProvisioner) DeleteStage(_ context.Context, spec provision.StageSpec, _ provision.StageResources) (provision.DeleteResult, error) {
	return provision.DeleteResult{}, p.record("delete", spec)
}

func (p *recordingProvisioner) MissingResources(_ context.Context, spec provision.StageSpec, _ provision.StageResources) ([]string, error) {
	if spec.Stage != 0 {
		return nil, nil
	}
	return p.missing[spec.Workflow], nil
}

func (p *recordingProvisioner) ChangedSettings(context.Context, provision.StageSpec, provision.StageResources) ([]provision.Drift, error) {
	return nil, nil
}

func (p *recordingProvisioner) took() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// machine is one agent over an in-memory inventory at a fixed clock.
type machine struct {
	t    testing.TB
	inv  *inventory.Memory
	prov *recordingProvisioner
	now  time.Time
}

func newMachine(t testing.TB) *machine {
	return &machine{t: t, inv: inventory.NewMemory(), prov: &recordingProvisioner{account: "123456789012"},
		now: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
}

func (m *machine) agent(id string, inv pipesync.Inventory) *pipesync.Reconciler {
	m.t.Helper()
	if inv == nil {
		inv = m.inv
	}
	r, err := pipesync.New(pipesync.Options{Provisioner: m.prov, Inventory: inv, AgentID: id,
		LeaseTTL: 15 * time.Minute, Now: func() time.Time { return m.now }})
	if err != nil {
		m.t.Fatal(err)
	}
	return r
}

func (m *machine) pass(r *pipesync.Reconciler, files map[string]string, commit string) *pipesync.Report {
	m.t.Helper()
	d := pipesync.LoadDesired(repo(files), commit)
	if len(d.Problems) > 0 {
		m.t.Fatalf("test repository at %s is invalid: %v", commit, d.Problems)
	}
	rep, err := r.Reconcile(context.Background(), d)
	if err != nil {
		m.t.Fatalf("pass at %s: %v", commit, err)
	}
	return rep
}

func (m *machine) entry(name string) inventory.IndexEntry {
	m.t.Helper()
	idx, err := m.inv.ReadIndex(context.Background())
	if err != nil {
		m.t.Fatal(err)
	}
	return idx.Workflows[name]
}

func resultOf(rep *pipesync.Report, name string) pipesync.Result {
	for _, r := range rep.Results {
		if r.Workflow == name {
			return r
		}
	}
	return pipesync.Result{}
}

func TestNewNeedsItsParts(t *testing.T) {
	for _, o := range []pipesync.Options{
		{},
		{Provisioner: &recordingProvisioner{}},
		{Inventory: inventory.NewMemory()},
	} {
		if _, err := pipesync.New(o); err == nil {
			t.Errorf("New(%+v) made a reconciler without its parts", o)
		}
	}
}

// TestMachineRecordsIntentBeforeApplying checks that every AWS call of an
// apply happens under a recorded intent and this agent's lease, and that the
// outcome clears both.
func TestMachineRecordsIntentBeforeApplying(t *testing.T) {
	m := newMachine(t)
	var during []inventory.IndexEntry
	var recordState []inventory.State
	m.prov.fail = func(op, wf string, stage int) error {
		during = append(during, m.entry(wf))
		rec, err := m.inv.ReadRecord(context.Background(), wf)
		if err != nil {
			return err
		}
		recordState = append(recordState, rec.State)
		return nil
	}
	files := map[string]string{"chain": sequenceRun("m-input", "m-output")}
	rep := m.pass(m.agent("a", nil), files, "c1")

	if got := m.prov.took(); !slices.Equal(got, []string{"ensure chain/0", "ensure chain/1", "ensure chain/2"}) {
		t.Fatalf("calls = %v, want the three stages in order", got)
	}
	for i, e := range during {
		if e.State != inventory.StateApplying || e.Holder != "a" || !e.LeaseExpires.Equal(m.now.Add(15*time.Minute)) ||
			e.PendingHash == "" || e.SpecHash != "" {
			t.Errorf("index during stage %d: %+v, want applying under a's lease with the pending hash", i, e)
		}
		if recordState[i] != inventory.StateApplying {
			t.Errorf("record during stage %d: %s, want applying", i, recordState[i])
		}
	}
	after := m.entry("chain")
	if after.State != inventory.StateReady || after.Holder != "" || !after.LeaseExpires.IsZero() ||
		after.PendingHash != "" || after.SpecHash != during[0].PendingHash || after.Commit != "c1" || after.Stages != 3 {
		t.Errorf("index after: %+v, want ready at c1 with the pending hash, lease released", after)
	}
	if r := resultOf(rep, "chain"); r.Err != nil || r.Action != pipesync.Create || r.InputBucket != "m-input" || r.OutputBucket != "m-output" {
		t.Errorf("result = %+v", r)
	}
	rec, _ := m.inv.ReadRecord(context.Background(), "chain")
	if rec.State != inventory.StateReady || rec.Commit != "c1" || len(rec.Stages) != 3 || rec.Stages[2].Resources.QueueURL == "" {
		t.Errorf("record after: %+v", rec)
	}

	// Nothing changed: the next pass makes no provisioner call.
	m.prov.fail = nil
	before := len(m.prov.took())
	if r := resultOf(m.pass(m.agent("a", nil), files, "c2"), "chain"); r.Action != pipesync.Unchanged {
		t.Errorf("second pass: %s, want unchanged", r.Action)
	}
	if len(m.prov.took()) != before {
		t.Errorf("an unchanged pass called the provisioner: %v", m.prov.took()[before:])
	}
}

// TestMachineLeases checks that a live lease of another agent keeps this one
// off the workflow, and an expired one does not.
func TestMachineLeases(t *testing.T) {
	m := newMachine(t)
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	idx, _ := m.inv.ReadIndex(context.Background())
	idx.Workflows["wf"] = inventory.IndexEntry{State: inventory.StateApplying, Holder: "b",
		LeaseExpires: m.now.Add(time.Minute), Region: "us-east-1"}
	if err := m.inv.WriteIndex(context.Background(), idx); err != nil {
		t.Fatal(err)
	}

	r := resultOf(m.pass(m.agent("a", nil), files, "c1"), "wf")
	if r.Action != pipesync.Skip || !strings.Contains(r.Reason, "agent b") {
		t.Fatalf("under b's live lease: %s (%s), want skip naming b", r.Action, r.Reason)
	}
	if calls := m.prov.took(); len(calls) != 0 {
		t.Fatalf("a touched a workflow b holds: %v", calls)
	}
	if e := m.entry("wf"); e.Holder != "b" {
		t.Fatalf("b's lease was taken: %+v", e)
	}

	m.now = m.now.Add(2 * time.Minute) // b died: its lease runs out
	r = resultOf(m.pass(m.agent("a", nil), files, "c1"), "wf")
	if r.Action != pipesync.Create || r.Err != nil || !strings.Contains(r.Reason, "resuming") {
		t.Fatalf("after b's lease expired: %s (%s, %v), want a create resuming b's apply", r.Action, r.Reason, r.Err)
	}
	if e := m.entry("wf"); e.State != inventory.StateReady || e.Holder != "" {
		t.Errorf("entry after a took over: %+v", e)
	}
}

// crashingInventory stops taking writes once the agent has "died": what
// was written before stays, as after a SIGKILL.
type crashingInventory struct {
	*inventory.Memory
	dead bool
}

var errDied = errors.New("agent died")

func (c *crashingInventory) WriteIndex(ctx context.Context, idx *inventory.Index) error {
	if c.dead {
		return errDied
	}
	return c.Memory.WriteIndex(ctx, idx)
}

func (c *crashingInventory) WriteRecord(ctx context.Context, rec *inventory.Record) error {
	if c.dead {
		return errDied
	}
	return c.Memory.WriteRecord(ctx, rec)
}

// TestMachineResumesAnInterruptedApply kills the agent in the second stage of
// an apply: the intent and the lease stay, the identifiers made so far are on
// record, and the next pass of the same agent finishes the apply without
// waiting for its own lease.
func TestMachineResumesAnInterruptedApply(t *testing.T) {
	m := newMachine(t)
	crashing := &crashingInventory{Memory: m.inv}
	m.prov.fail = func(op, wf string, stage int) error {
		if stage == 1 {
			crashing.dead = true
			return errDied
		}
		return nil
	}
	files := map[string]string{"chain": sequenceRun("m-input", "m-output")}
	if _, err := m.agent("a", crashing).Reconcile(context.Background(), pipesync.LoadDesired(repo(files), "c1")); !errors.Is(err, errDied) {
		t.Fatalf("pass that died: %v, want its failed write", err)
	}
	e := m.entry("chain")
	if e.State != inventory.StateApplying || e.Holder != "a" || e.PendingHash == "" {
		t.Fatalf("index after the crash: %+v, want the intent and a's lease", e)
	}
	rec, _ := m.inv.ReadRecord(context.Background(), "chain")
	if rec.State != inventory.StateApplying || rec.Stages[0].Resources.QueueURL == "" {
		t.Fatalf("record after the crash: state %s, stage 0 %+v; want applying with stage 0's identifiers",
			rec.State, rec.Stages[0].Resources)
	}

	// Another agent keeps off while the lease runs...
	m.prov.fail = nil
	if r := resultOf(m.pass(m.agent("b", nil), files, "c1"), "chain"); r.Action != pipesync.Skip {
		t.Fatalf("agent b under a's lease: %s", r.Action)
	}
	// ...but a restarted a (same ID) resumes at once.
	r := resultOf(m.pass(m.agent("a", nil), files, "c1"), "chain")
	if r.Err != nil || !strings.Contains(r.Reason, "resuming an interrupted apply") {
		t.Fatalf("resumed pass: %+v", r)
	}
	want := []string{"ensure chain/0", "ensure chain/1", "ensure chain/0", "ensure chain/1", "ensure chain/2"}
	if got := m.prov.took(); !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if e := m.entry("chain"); e.State != inventory.StateReady || e.Holder != "" {
		t.Errorf("index after resuming: %+v", e)
	}
}

// racingInventory lets agent b take a lease on the workflow other just
// before this agent's next index write, as many times as told.
type racingInventory struct {
	*inventory.Memory
	races int
	other string
	until time.Time // b's lease
}

func (r *racingInventory) WriteIndex(ctx context.Context, idx *inventory.Index) error {
	if r.races > 0 {
		r.races--
		theirs, err := r.Memory.ReadIndex(ctx)
		if err != nil {
			return err
		}
		theirs.Workflows[r.other] = inventory.IndexEntry{State: inventory.StateApplying, Region: "us-east-1",
			Holder: "b", LeaseExpires: r.until}
		if err := r.Memory.WriteIndex(ctx, theirs); err != nil {
			return err
		}
	}
	return r.Memory.WriteIndex(ctx, idx)
}

// TestMachineReplansAfterLosingTheIndex: agents a and b both plan to create
// two workflows; b records its intent on one of them first, between a's read
// and a's intent write. a must lose that write, re-read, re-plan (now
// skipping b's workflow), apply only its own, and keep b's lease.
func TestMachineReplansAfterLosingTheIndex(t *testing.T) {
	m := newMachine(t)
	racing := &racingInventory{Memory: m.inv, races: 1, other: "theirs", until: m.now.Add(time.Minute)}
	files := map[string]string{"mine": singleRun("m-input", "m-output", "x"), "theirs": singleRun("m-input2", "m-output2", "y")}
	rep := m.pass(m.agent("a", racing), files, "c1")

	if got := m.prov.took(); !slices.Equal(got, []string{"ensure mine/0"}) {
		t.Fatalf("calls = %v, want mine applied once and theirs left alone", got)
	}
	if r := resultOf(rep, "theirs"); r.Action != pipesync.Skip {
		t.Errorf("the re-plan did not see b's lease: %+v", r)
	}
	if e := m.entry("theirs"); e.Holder != "b" {
		t.Errorf("b's lease was overwritten: %+v", e)
	}
	if e := m.entry("mine"); e.State != inventory.StateReady {
		t.Errorf("mine after the pass: %+v", e)
	}
}

// TestMachineKeepsOthersEntriesWhenRecording: another agent writes the index
// while this one applies; the outcome is written over the fresh index.
func TestMachineKeepsOthersEntriesWhenRecording(t *testing.T) {
	m := newMachine(t)
	racing := &racingInventory{Memory: m.inv, other: "theirs", until: m.now.Add(time.Minute)}
	m.prov.fail = func(string, string, int) error {
		racing.races = 1 // the other agent writes before our outcome
		return nil
	}
	m.pass(m.agent("a", racing), map[string]string{"mine": singleRun("m-input", "m-output", "x")}, "c1")
	if e := m.entry("theirs"); e.Holder != "b" {
		t.Errorf("the other agent's entry was lost: %+v", e)
	}
	if e := m.entry("mine"); e.State != inventory.StateReady || e.Holder != "" {
		t.Errorf("mine was not recorded over the fresh index: %+v", e)
	}
}

// TestMachineFailureIsRecordedAndRetried checks a failed stage: the entry and
// the record say why, the lease is released, and the next pass retries.
func TestMachineFailureIsRecordedAndRetried(t *testing.T) {
	m := newMachine(t)
	m.prov.fail = func(op, wf string, stage int) error {
		if stage == 1 {
			return errors.New("quota exceeded")
		}
		return nil
	}
	files := map[string]string{"chain": sequenceRun("m-input", "m-output")}
	r := resultOf(m.pass(m.agent("a", nil), files, "c1"), "chain")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "stage 1 (dedup): quota exceeded") {
		t.Fatalf("result error = %v, want stage 1's", r.Err)
	}
	e := m.entry("chain")
	if e.State != inventory.StateFailed || !strings.Contains(e.Error, "quota exceeded") || e.Holder != "" {
		t.Fatalf("index after the failure: %+v", e)
	}
	rec, _ := m.inv.ReadRecord(context.Background(), "chain")
	if rec.State != inventory.StateFailed || !strings.Contains(rec.Error, "quota exceeded") {
		t.Fatalf("record after the failure: %+v", rec)
	}

	m.prov.fail = nil
	r = resultOf(m.pass(m.agent("a", nil), files, "c1"), "chain")
	if r.Err != nil || !strings.Contains(r.Reason, "retrying after failure") {
		t.Fatalf("retry: %+v", r)
	}
	if e := m.entry("chain"); e.State != inventory.StateReady || e.Error != "" {
		t.Errorf("index after the retry: %+v", e)
	}
}

// TestMachineDeleteTearsDownLaterStagesFirst removes a deployed sequence.
func TestMachineDeleteTearsDownLaterStagesFirst(t *testing.T) {
	m := newMachine(t)
	m.pass(m.agent("a", nil), map[string]string{"chain": sequenceRun("m-input", "m-output")}, "c1")
	before := len(m.prov.took())
	r := resultOf(m.pass(m.agent("a", nil), map[string]string{}, "c2"), "chain")
	if r.Action != pipesync.Delete || r.Err != nil {
		t.Fatalf("delete: %+v", r)
	}
	if got := m.prov.took()[before:]; !slices.Equal(got, []string{"delete chain/2", "delete chain/1", "delete chain/0"}) {
		t.Errorf("delete calls = %v, want later stages first", got)
	}
	if _, ok := m.inv.ReadIndex(context.Background()); ok != nil {
		t.Fatal(ok)
	}
	if e := m.entry("chain"); e != (inventory.IndexEntry{}) {
		t.Errorf("index entry left after delete: %+v", e)
	}
	if _, err := m.inv.ReadRecord(context.Background(), "chain"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("record after delete: %v, want ErrNotFound", err)
	}
}

// TestMachineAccountMismatchTouchesNothing: a workflow for another account
// fails before any intent or AWS call.
func TestMachineAccountMismatchTouchesNothing(t *testing.T) {
	m := newMachine(t)
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x", `"account_id": "999999999999"`)}
	r := resultOf(m.pass(m.agent("a", nil), files, "c1"), "wf")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "account 999999999999") {
		t.Fatalf("result: %+v, want the account mismatch", r)
	}
	if calls := m.prov.took(); len(calls) != 0 {
		t.Errorf("calls = %v, want none", calls)
	}
	if e := m.entry("wf"); e != (inventory.IndexEntry{}) {
		t.Errorf("index entry written for a refused workflow: %+v", e)
	}
}

// TestMachineRepairReappliesDrift: a drift check turns an unchanged workflow
// whose resources are gone into an update naming them.
func TestMachineRepairReappliesDrift(t *testing.T) {
	m := newMachine(t)
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	m.pass(m.agent("a", nil), files, "c1")
	m.prov.missing = map[string][]string{"wf": {"sqs queue cp-wf-0"}}
	rep, err := m.agent("a", nil).Repair(context.Background(), pipesync.LoadDesired(repo(files), "c1"))
	if err != nil {
		t.Fatal(err)
	}
	r := resultOf(rep, "wf")
	if r.Action != pipesync.Update || !strings.Contains(r.Reason, "drift: re-creating sqs queue cp-wf-0") {
		t.Fatalf("repair: %s (%s), want an update naming the queue", r.Action, r.Reason)
	}
	if got := m.prov.took(); !slices.Equal(got, []string{"ensure wf/0", "ensure wf/0"}) {
		t.Errorf("calls = %v", got)
	}
}

// TestMachineTeardown: a teardown plan writes nothing; a teardown of one
// named workflow deletes only it, by the path of a removed file, and leaves
// its entry torn down; passes then leave it down until its file changes,
// and forget it once the file is gone.
func TestMachineTeardown(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t)
	files := map[string]string{"one": singleRun("t-one-in", "t-one-out", "x"), "two": singleRun("t-two-in", "t-two-out", "x")}
	m.pass(m.agent("a", nil), files, "c1")
	idx, err := m.inv.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calls := len(m.prov.took())

	r := m.agent("a", nil)
	plan, err := r.TeardownPlan(idx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, u, d := plan.Counts(); c != 0 || u != 0 || d != 2 {
		t.Errorf("teardown plan %s, want -2 delete", plan.Summary())
	}
	if after, _ := m.inv.ReadIndex(ctx); after.ETag != idx.ETag || len(m.prov.took()) != calls {
		t.Error("a teardown plan wrote to the inventory or called the provisioner")
	}
	if _, err := r.TeardownPlan(idx, []string{"three"}); err == nil || !strings.Contains(err.Error(), "three") {
		t.Errorf("teardown of an unknown workflow: %v, want an error naming it", err)
	}

	rep, err := r.Teardown(ctx, []string{"one"})
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("teardown one: %v %+v", err, rep)
	}
	if got := m.prov.took()[calls:]; !slices.Equal(got, []string{"delete one/0"}) {
		t.Errorf("teardown of one called %v, want only delete one/0", got)
	}
	if e := m.entry("one"); e.State != inventory.StateTornDown || e.SpecHash == "" || e.Holder != "" {
		t.Errorf("entry of one after teardown: %+v, want torn down with its spec hash", e)
	}
	if e := m.entry("two"); e.State != inventory.StateReady {
		t.Errorf("entry of two after teardown of one: %+v, want ready", e)
	}
	if _, err := m.inv.ReadRecord(ctx, "one"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("record of one after teardown: %v, want ErrNotFound", err)
	}

	calls = len(m.prov.took())
	if got := resultOf(m.pass(m.agent("a", nil), files, "c2"), "one"); got.Action != pipesync.TornDown {
		t.Errorf("pass with the file unchanged: %s, want it left torn down", got.Action)
	}
	if got := m.prov.took()[calls:]; len(got) != 0 {
		t.Errorf("pass after teardown called %v, want nothing", got)
	}

	changed := maps.Clone(files)
	changed["one"] = singleRun("t-one-in", "t-one-out", "y")
	if got := resultOf(m.pass(m.agent("a", nil), changed, "c3"), "one"); got.Action != pipesync.Create || got.Err != nil {
		t.Errorf("pass with the file changed: %s %v, want create", got.Action, got.Err)
	}
	if e := m.entry("one"); e.State != inventory.StateReady {
		t.Errorf("entry of one after the re-create: %+v", e)
	}

	if rep, err := r.Teardown(ctx, nil); err != nil || rep.Failed() > 0 {
		t.Fatalf("teardown all: %v %+v", err, rep)
	}
	delete(changed, "two")
	m.pass(m.agent("a", nil), changed, "c4")
	if e := m.entry("two"); e != (inventory.IndexEntry{}) {
		t.Errorf("entry of two, torn down and then removed: %+v, want none", e)
	}
	if e := m.entry("one"); e.State != inventory.StateTornDown {
		t.Errorf("entry of one, torn down and file kept: %+v", e)
	}
}
