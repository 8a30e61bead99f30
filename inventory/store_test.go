package inventory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// The implementations satisfy what the reconciler needs of them. The
// assertions live here because package inventory cannot import sync.
var (
	_ pipesync.Inventory  = (*inventory.Store)(nil)
	_ pipesync.RunRecords = (*inventory.Store)(nil)
	_ pipesync.Inventory  = (*inventory.Memory)(nil)
	_ pipesync.RunRecords = (*inventory.Memory)(nil)
)

// store is what the conformance tests use of an implementation.
type store interface {
	pipesync.Inventory
	pipesync.RunRecords
	ListRecords(ctx context.Context) ([]string, error)
}

// implementation is one store under test: the S3 store against kumo (calls
// counts its requests), or the in-memory one (calls is nil).
type implementation struct {
	name string
	open func(t *testing.T) (st store, putRun func(key string, v any), calls *testenv.CallCounter)
}

var implementations = []implementation{
	{"s3", openS3Store},
	{"memory", func(t *testing.T) (store, func(string, any), *testenv.CallCounter) {
		m := inventory.NewMemory()
		return m, func(key string, v any) {
			if err := m.PutRun(key, v); err != nil {
				t.Fatal(err)
			}
		}, nil
	}},
}

// forEachStore runs test against every implementation, so the in-memory
// store the reconciler's unit tests use behaves as the S3 one does.
func forEachStore(t *testing.T, test func(t *testing.T, st store, putRun func(string, any), calls *testenv.CallCounter)) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			st, putRun, calls := impl.open(t)
			test(t, st, putRun, calls)
		})
	}
}

func openS3Store(t *testing.T) (store, func(string, any), *testenv.CallCounter) {
	t.Helper()
	cfg := testenv.Kumo(t)
	bucket := "cloudpipe-state-" + testenv.UniqueName(t) // as the agent's policy scopes it
	client := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	calls := &testenv.CallCounter{}
	counted := testenv.AsRole(cfg, testenv.AgentRole) // the store is the agent's
	calls.Attach(&counted)
	putRun := func(key string, v any) {
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	return inventory.NewStore(counted, bucket, true), putRun, calls
}

func TestInventoryIndexConditionalWrites(t *testing.T) {
	forEachStore(t, testIndexConditionalWrites)
}

func testIndexConditionalWrites(t *testing.T, inv store, _ func(string, any), calls *testenv.CallCounter) {
	ctx := t.Context()

	idx, err := inv.ReadIndex(ctx)
	if err != nil {
		t.Fatalf("read missing index: %v", err)
	}
	if idx.ETag != "" || len(idx.Workflows) != 0 {
		t.Fatalf("missing index read as %+v, want empty", idx)
	}
	// Two agents read the same (missing) index; only the first create wins.
	other, _ := inv.ReadIndex(ctx)
	idx.Workflows["a"] = inventory.IndexEntry{State: inventory.StateReady, SpecHash: "h1"}
	if err := inv.WriteIndex(ctx, idx); err != nil {
		t.Fatalf("create index: %v", err)
	}
	if calls != nil {
		if put := calls.LastInput("S3.PutObject").(*s3.PutObjectInput); aws.ToString(put.IfNoneMatch) != "*" {
			t.Errorf("creating the index sent If-None-Match %q, want *", aws.ToString(put.IfNoneMatch))
		}
	}
	other.Workflows["b"] = inventory.IndexEntry{State: inventory.StateReady}
	if err := inv.WriteIndex(ctx, other); !errors.Is(err, inventory.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}

	// Both read the current version; only the first update wins.
	a, _ := inv.ReadIndex(ctx)
	b, _ := inv.ReadIndex(ctx)
	a.Commit = "c1"
	if err := inv.WriteIndex(ctx, a); err != nil {
		t.Fatalf("update: %v", err)
	}
	if calls != nil {
		if put := calls.LastInput("S3.PutObject").(*s3.PutObjectInput); aws.ToString(put.IfMatch) != b.ETag {
			t.Errorf("update sent If-Match %q, want the ETag read %q", aws.ToString(put.IfMatch), b.ETag)
		}
	}
	b.Commit = "c2"
	if err := inv.WriteIndex(ctx, b); !errors.Is(err, inventory.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	got, _ := inv.ReadIndex(ctx)
	if got.Commit != "c1" || got.Workflows["a"].SpecHash != "h1" {
		t.Errorf("index after the race: %+v", got)
	}
	// The winner can go on writing over its own version.
	a.Commit = "c3"
	if err := inv.WriteIndex(ctx, a); err != nil {
		t.Fatalf("winner's second update: %v", err)
	}
}

func TestInventoryRecords(t *testing.T) {
	forEachStore(t, testRecords)
}

func testRecords(t *testing.T, inv store, _ func(string, any), _ *testenv.CallCounter) {
	ctx := t.Context()
	if _, err := inv.ReadRecord(ctx, "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("missing record: %v, want ErrNotFound", err)
	}
	rec := &inventory.Record{Workflow: "wf", Region: "us-east-1", State: inventory.StateApplying,
		Stages: []inventory.StageRecord{{Spec: provision.StageSpec{Workflow: "wf", InputBucket: "in"},
			Resources: provision.StageResources{QueueURL: "http://q"}}}}
	if err := inv.WriteRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	stale := *rec
	rec.State = inventory.StateReady
	if err := inv.WriteRecord(ctx, rec); err != nil {
		t.Fatalf("update own record: %v", err)
	}
	stale.State = inventory.StateFailed
	if err := inv.WriteRecord(ctx, &stale); !errors.Is(err, inventory.ErrConflict) {
		t.Fatalf("stale record write: %v, want ErrConflict", err)
	}
	got, err := inv.ReadRecord(ctx, "wf")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != inventory.StateReady || got.Stages[0].Resources.QueueURL != "http://q" || got.Stages[0].Spec.InputBucket != "in" {
		t.Errorf("record read back as %+v", got)
	}
	names, err := inv.ListRecords(ctx)
	if err != nil || !slices.Equal(names, []string{"wf"}) {
		t.Errorf("ListRecords = %v, %v", names, err)
	}
	if err := inv.DeleteRecord(ctx, "wf"); err != nil {
		t.Fatal(err)
	}
	if err := inv.DeleteRecord(ctx, "wf"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := inv.ReadRecord(ctx, "wf"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("deleted record: %v, want ErrNotFound", err)
	}
}

func TestInventoryMissingStateBucket(t *testing.T) {
	inv := inventory.NewStore(testenv.Agent(t), "cloudpipe-state-"+testenv.UniqueName(t)+"-nobucket", true)
	_, err := inv.ReadIndex(t.Context())
	if err == nil || !strings.Contains(err.Error(), "agent bootstrap") {
		t.Fatalf("ReadIndex on a missing bucket: %v, want a hint to run bootstrap", err)
	}
}

func TestIndexEntryHeldBy(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		entry inventory.IndexEntry
		held  bool
	}{
		{"free", inventory.IndexEntry{}, false},
		{"mine", inventory.IndexEntry{Holder: "me", LeaseExpires: now.Add(time.Hour)}, false},
		{"other's live lease", inventory.IndexEntry{Holder: "other", LeaseExpires: now.Add(time.Hour)}, true},
		{"other's expired lease", inventory.IndexEntry{Holder: "other", LeaseExpires: now.Add(-time.Second)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, held := tt.entry.HeldBy("me", now); held != tt.held {
				t.Errorf("HeldBy = %v, want %v", held, tt.held)
			}
		})
	}
}

func TestInventoryRunRecords(t *testing.T) {
	forEachStore(t, testRunRecords)
}

// testRunRecords checks the reader of what runners write: one stage's keys
// only, oldest first, and from a given key on.
func testRunRecords(t *testing.T, runs store, putRun func(string, any), _ *testenv.CallCounter) {
	ctx := t.Context()
	keys := []string{
		"runs/wf/0/20260101T000000.000000000Z-ok-a.json",
		"runs/wf/0/20260101T000001.000000000Z-failed-b.json",
		"runs/wf/0/20260101T000002.000000000Z-ok-c.json",
	}
	for _, k := range append([]string{"runs/wf/1/20260101T000000.000000000Z-ok-d.json", "runs/wf2/0/x.json"}, keys...) {
		putRun(k, map[string]string{"key": k})
	}
	got, err := runs.ListRunKeys(ctx, "wf", 0, "")
	if err != nil || !slices.Equal(got, keys) {
		t.Fatalf("ListRunKeys(wf, 0) = %v, %v; want %v", got, err, keys)
	}
	got, err = runs.ListRunKeys(ctx, "wf", 0, keys[0])
	if err != nil || !slices.Equal(got, keys[1:]) {
		t.Fatalf("ListRunKeys after %s = %v, %v; want %v", keys[0], got, err, keys[1:])
	}
	var body map[string]string
	if err := runs.ReadRun(ctx, keys[2], &body); err != nil || body["key"] != keys[2] {
		t.Fatalf("ReadRun(%s) = %v, %v", keys[2], body, err)
	}
	if err := runs.ReadRun(ctx, "runs/wf/0/missing.json", &body); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("ReadRun of a missing key: %v, want ErrNotFound", err)
	}
}
