package provision_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

func newInventory(t *testing.T) (*provision.Inventory, *testenv.CallCounter) {
	t.Helper()
	cfg := testenv.Kumo(t)
	bucket := testenv.UniqueName(t) + "-state"
	client := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	calls := &testenv.CallCounter{}
	counted := cfg.Copy()
	calls.Attach(&counted)
	return provision.NewInventory(counted, bucket, true), calls
}

func TestInventoryIndexConditionalWrites(t *testing.T) {
	inv, calls := newInventory(t)
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
	idx.Workflows["a"] = provision.IndexEntry{State: provision.StateReady, SpecHash: "h1"}
	if err := inv.WriteIndex(ctx, idx); err != nil {
		t.Fatalf("create index: %v", err)
	}
	if put := calls.LastInput("S3.PutObject").(*s3.PutObjectInput); aws.ToString(put.IfNoneMatch) != "*" {
		t.Errorf("creating the index sent If-None-Match %q, want *", aws.ToString(put.IfNoneMatch))
	}
	other.Workflows["b"] = provision.IndexEntry{State: provision.StateReady}
	if err := inv.WriteIndex(ctx, other); !errors.Is(err, provision.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}

	// Both read the current version; only the first update wins.
	a, _ := inv.ReadIndex(ctx)
	b, _ := inv.ReadIndex(ctx)
	a.Commit = "c1"
	if err := inv.WriteIndex(ctx, a); err != nil {
		t.Fatalf("update: %v", err)
	}
	if put := calls.LastInput("S3.PutObject").(*s3.PutObjectInput); aws.ToString(put.IfMatch) != b.ETag {
		t.Errorf("update sent If-Match %q, want the ETag read %q", aws.ToString(put.IfMatch), b.ETag)
	}
	b.Commit = "c2"
	if err := inv.WriteIndex(ctx, b); !errors.Is(err, provision.ErrConflict) {
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
	inv, _ := newInventory(t)
	ctx := t.Context()
	if _, err := inv.ReadRecord(ctx, "nope"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("missing record: %v, want ErrNotFound", err)
	}
	rec := &provision.Record{Workflow: "wf", Region: "us-east-1", State: provision.StateApplying,
		Stages: []provision.StageRecord{{Spec: provision.StageSpec{Workflow: "wf", InputBucket: "in"},
			Resources: provision.StageResources{QueueURL: "http://q"}}}}
	if err := inv.WriteRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	stale := *rec
	rec.State = provision.StateReady
	if err := inv.WriteRecord(ctx, rec); err != nil {
		t.Fatalf("update own record: %v", err)
	}
	stale.State = provision.StateFailed
	if err := inv.WriteRecord(ctx, &stale); !errors.Is(err, provision.ErrConflict) {
		t.Fatalf("stale record write: %v, want ErrConflict", err)
	}
	got, err := inv.ReadRecord(ctx, "wf")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != provision.StateReady || got.Stages[0].Resources.QueueURL != "http://q" || got.Stages[0].Spec.InputBucket != "in" {
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
	if _, err := inv.ReadRecord(ctx, "wf"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("deleted record: %v, want ErrNotFound", err)
	}
}

func TestInventoryMissingStateBucket(t *testing.T) {
	inv := provision.NewInventory(testenv.Kumo(t), testenv.UniqueName(t)+"-nobucket", true)
	_, err := inv.ReadIndex(t.Context())
	if err == nil || !strings.Contains(err.Error(), "agent bootstrap") {
		t.Fatalf("ReadIndex on a missing bucket: %v, want a hint to run bootstrap", err)
	}
}

func TestIndexEntryHeldBy(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		entry provision.IndexEntry
		held  bool
	}{
		{"free", provision.IndexEntry{}, false},
		{"mine", provision.IndexEntry{Holder: "me", LeaseExpires: now.Add(time.Hour)}, false},
		{"other's live lease", provision.IndexEntry{Holder: "other", LeaseExpires: now.Add(time.Hour)}, true},
		{"other's expired lease", provision.IndexEntry{Holder: "other", LeaseExpires: now.Add(-time.Second)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, held := tt.entry.HeldBy("me", now); held != tt.held {
				t.Errorf("HeldBy = %v, want %v", held, tt.held)
			}
		})
	}
}
