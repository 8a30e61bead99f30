package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// The inventory lives in the state bucket as one small index, read once per
// pass to answer "what changed?", and one record per workflow holding the
// stage specs and resource identifiers needed to update or tear it down.
const (
	indexKey     = "inventory/index.json"
	recordPrefix = "inventory/workflows/"
	// maxInventoryObject bounds what a read accepts: the index of 1000
	// workflows is about 300 KiB, so anything near this limit is corrupt.
	maxInventoryObject = 64 << 20
)

// State is where a workflow is in its life cycle, as the inventory records it.
type State string

// States of an inventory entry.
const (
	// StateApplying: an agent recorded its intent to create or update the
	// workflow and may have created some of its resources.
	StateApplying State = "applying"
	// StateDeleting: an agent recorded its intent to tear the workflow down.
	StateDeleting State = "deleting"
	// StateReady: the resources match SpecHash.
	StateReady State = "ready"
	// StateFailed: the last apply failed; Error says why.
	StateFailed State = "failed"
)

// Index is the inventory's summary: one entry per workflow the agent owns.
type Index struct {
	Commit    string                `json:"commit,omitempty"` // last commit a pass completed
	UpdatedAt time.Time             `json:"updated_at"`
	Workflows map[string]IndexEntry `json:"workflows"`

	// ETag is the version read; WriteIndex writes only over that version.
	ETag string `json:"-"`
}

// IndexEntry is the inventory's summary of one workflow.
type IndexEntry struct {
	Region   string `json:"region"`
	Stages   int    `json:"stages,omitempty"`    // how many stages the deployed spec has
	SpecHash string `json:"spec_hash,omitempty"` // of the deployed spec; empty until a first apply succeeds
	Commit   string `json:"commit,omitempty"`    // commit of the last successful apply
	// Release names the agent's stage-function code and runner image that
	// the last successful apply deployed (see sync.Options.Release).
	Release string `json:"release,omitempty"`
	State   State  `json:"state"`
	// PendingHash is the spec an applying agent is moving to.
	PendingHash string `json:"pending_hash,omitempty"`
	// Holder and LeaseExpires lock the entry while an agent applies it: no
	// other agent touches the workflow until the lease expires.
	Holder       string    `json:"holder,omitempty"`
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
	Error        string    `json:"error,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// HeldBy reports whether another agent holds a live lease on the entry.
func (e IndexEntry) HeldBy(agentID string, now time.Time) (string, bool) {
	if e.Holder == "" || e.Holder == agentID || !now.Before(e.LeaseExpires) {
		return "", false
	}
	return e.Holder, true
}

// Record is everything the agent knows about one workflow's resources.
type Record struct {
	Workflow string        `json:"workflow"`
	Region   string        `json:"region"`
	Commit   string        `json:"commit,omitempty"`
	SpecHash string        `json:"spec_hash,omitempty"`
	State    State         `json:"state"`
	Stages   []StageRecord `json:"stages"`
	// Retired holds stages the current spec no longer has (a sequence that
	// shrank, a bucket or region that changed) until they are torn down.
	Retired   []StageRecord `json:"retired,omitempty"`
	Error     string        `json:"error,omitempty"`
	UpdatedAt time.Time     `json:"updated_at"`

	ETag string `json:"-"`
}

// StageRecord pairs the spec a stage was (or is being) built from with the
// identifiers of what exists. The spec is kept so the stage can be torn down
// after its workflow file is gone.
type StageRecord struct {
	Spec      StageSpec      `json:"spec"`
	Resources StageResources `json:"resources"`
}

// Inventory reads and writes the inventory with conditional requests, so two
// agents sharing a state bucket can never both win a write: the loser gets
// ErrConflict and must re-read.
type Inventory struct {
	client *s3.Client
	bucket string
}

// NewInventory returns the inventory kept in bucket. cfg's region must be the
// bucket's region.
func NewInventory(cfg aws.Config, bucket string, usePathStyle bool) *Inventory {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = usePathStyle
		// The same retryer as the Provisioner's (see New): the inventory's
		// writes are the pass's most important, and 3 attempts give up on
		// a SlowDown streak that 10 ride out.
		o.Retryer = newRetryer()
	})
	return &Inventory{client: client, bucket: bucket}
}

// Bucket is the state bucket's name.
func (inv *Inventory) Bucket() string { return inv.bucket }

// ReadIndex returns the index; a missing index is an empty one (ETag "").
func (inv *Inventory) ReadIndex(ctx context.Context) (*Index, error) {
	idx := &Index{Workflows: map[string]IndexEntry{}}
	etag, err := inv.get(ctx, indexKey, idx)
	if errors.Is(err, ErrNotFound) {
		// No index yet: a first pass, or the wrong bucket. Tell them apart
		// now (once per agent, not per pass) rather than at the first write.
		if _, herr := inv.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(inv.bucket)}); herr != nil {
			if isInventoryObjectMissing(herr) {
				return nil, fmt.Errorf("read inventory index: %w", inv.noBucket())
			}
			return nil, fmt.Errorf("read inventory index: check state bucket %s: %w", inv.bucket, herr)
		}
		return &Index{Workflows: map[string]IndexEntry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory index: %w", err)
	}
	if idx.Workflows == nil {
		idx.Workflows = map[string]IndexEntry{}
	}
	idx.ETag = etag
	return idx, nil
}

// WriteIndex writes idx over the version it was read at (or creates it when
// idx.ETag is empty) and updates idx.ETag. It returns ErrConflict if another
// writer got there first.
func (inv *Inventory) WriteIndex(ctx context.Context, idx *Index) error {
	etag, err := inv.put(ctx, indexKey, idx, idx.ETag)
	if err != nil {
		return fmt.Errorf("write inventory index: %w", err)
	}
	idx.ETag = etag
	return nil
}

// ReadRecord returns the workflow's record, or ErrNotFound.
func (inv *Inventory) ReadRecord(ctx context.Context, workflow string) (*Record, error) {
	var rec Record
	etag, err := inv.get(ctx, recordPrefix+workflow+".json", &rec)
	if err != nil {
		return nil, fmt.Errorf("read inventory record %s: %w", workflow, err)
	}
	rec.ETag = etag
	return &rec, nil
}

// WriteRecord writes rec over the version it was read at (or creates it when
// rec.ETag is empty) and updates rec.ETag; ErrConflict if it changed since.
func (inv *Inventory) WriteRecord(ctx context.Context, rec *Record) error {
	etag, err := inv.put(ctx, recordPrefix+rec.Workflow+".json", rec, rec.ETag)
	if err != nil {
		return fmt.Errorf("write inventory record %s: %w", rec.Workflow, err)
	}
	rec.ETag = etag
	return nil
}

// DeleteRecord removes the workflow's record; a missing record is success.
func (inv *Inventory) DeleteRecord(ctx context.Context, workflow string) error {
	_, err := inv.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(inv.bucket),
		Key:    aws.String(recordPrefix + workflow + ".json"),
	})
	if err != nil && !isInventoryObjectMissing(err) {
		return fmt.Errorf("delete inventory record %s: %w", workflow, err)
	}
	return nil
}

// ListRunKeys returns the keys of the run records of one stage written after
// startAfter (a key returned before, or "" for all), oldest first. Runners
// write them under runs/<workflow>/<stage>/ with the finishing time first in
// the name, so the keys alone give counts and order.
func (inv *Inventory) ListRunKeys(ctx context.Context, workflow string, stage int, startAfter string) ([]string, error) {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(inv.bucket),
		Prefix: aws.String(contract.StageRunsPrefix(workflow, stage)),
	}
	if startAfter != "" {
		in.StartAfter = aws.String(startAfter)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(inv.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list run records of %s stage %d: %w", workflow, stage, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// ReadRun decodes the run record at key into v.
func (inv *Inventory) ReadRun(ctx context.Context, key string, v any) error {
	if _, err := inv.get(ctx, key, v); err != nil {
		return fmt.Errorf("read run record %s: %w", key, err)
	}
	return nil
}

// ListRecords returns the names of every workflow that has a record, for
// audits that must not trust the index alone.
func (inv *Inventory) ListRecords(ctx context.Context) ([]string, error) {
	var names []string
	p := s3.NewListObjectsV2Paginator(inv.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(inv.bucket),
		Prefix: aws.String(recordPrefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list inventory records: %w", err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			name := key[len(recordPrefix):]
			if len(name) > len(".json") && name[len(name)-len(".json"):] == ".json" {
				names = append(names, name[:len(name)-len(".json")])
			}
		}
	}
	return names, nil
}

func (inv *Inventory) noBucket() error {
	return fmt.Errorf("state bucket %s does not exist: run 'agent bootstrap' first, or pass the right --state-bucket", inv.bucket)
}

func (inv *Inventory) get(ctx context.Context, key string, v any) (etag string, err error) {
	out, err := inv.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(inv.bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		var nsb *s3types.NoSuchBucket
		if errors.As(err, &nsb) {
			return "", inv.noBucket()
		}
		if isInventoryObjectMissing(err) {
			return "", ErrNotFound
		}
		return "", err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxInventoryObject+1))
	if err != nil {
		return "", fmt.Errorf("read s3://%s/%s: %w", inv.bucket, key, err)
	}
	if len(data) > maxInventoryObject {
		return "", fmt.Errorf("s3://%s/%s is larger than %d bytes", inv.bucket, key, maxInventoryObject)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "", fmt.Errorf("decode s3://%s/%s: %w", inv.bucket, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// put writes v at key only over version etag (If-Match), or only if the key
// does not exist yet when etag is empty (If-None-Match: *).
func (inv *Inventory) put(ctx context.Context, key string, v any, etag string) (string, error) {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:      aws.String(inv.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	}
	if etag == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(etag)
	}
	out, err := inv.client.PutObject(ctx, in)
	if err != nil {
		if isConditionalWriteLost(err) {
			// The SDK retries a PUT whose answer was lost (connection reset,
			// timeout). If the lost attempt took effect, the retry fails its
			// own precondition; the object then holds exactly our bytes, and
			// the write is ours, not a conflict.
			if etag, ok := inv.holds(ctx, key, data); ok {
				return etag, nil
			}
			return "", ErrConflict
		}
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// holds reports whether the object at key is data, and its ETag.
func (inv *Inventory) holds(ctx context.Context, key string, data []byte) (string, bool) {
	out, err := inv.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(inv.bucket), Key: aws.String(key)})
	if err != nil {
		return "", false
	}
	defer out.Body.Close()
	have, err := io.ReadAll(io.LimitReader(out.Body, int64(len(data))+1))
	if err != nil || !bytes.Equal(have, data) {
		return "", false
	}
	return aws.ToString(out.ETag), true
}

// isConditionalWriteLost reports a lost conditional write. S3 answers 412 when
// If-Match or If-None-Match fails, and 409 ConditionalRequestConflict when
// two conditional writes to one key overlap; both mean "re-read".
func isConditionalWriteLost(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed:
			return true
		case http.StatusConflict:
			var ae smithy.APIError
			return errors.As(err, &ae) && ae.ErrorCode() == "ConditionalRequestConflict"
		}
	}
	return false
}

func isInventoryObjectMissing(err error) bool {
	var nsk *s3types.NoSuchKey
	var nf *s3types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}
