package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/provision"
)

// Store is the inventory in an S3 bucket. It reads and writes with
// conditional requests, so two agents sharing a state bucket can never both
// win a write: the loser gets ErrConflict and must re-read.
type Store struct {
	client *s3.Client
	bucket string
}

// NewStore returns the inventory kept in bucket. cfg's region must be the
// bucket's region.
func NewStore(cfg aws.Config, bucket string, usePathStyle bool) *Store {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = usePathStyle
		// The same retryer as the Provisioner's (see New): the inventory's
		// writes are the pass's most important, and 3 attempts give up on
		// a SlowDown streak that 10 ride out.
		o.Retryer = provision.NewRetryer()
	})
	return &Store{client: client, bucket: bucket}
}

// Bucket is the state bucket's name.
func (inv *Store) Bucket() string { return inv.bucket }

// ReadIndex returns the index; a missing index is an empty one (ETag "").
func (inv *Store) ReadIndex(ctx context.Context) (*Index, error) {
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
func (inv *Store) WriteIndex(ctx context.Context, idx *Index) error {
	etag, err := inv.put(ctx, indexKey, idx, idx.ETag)
	if err != nil {
		return fmt.Errorf("write inventory index: %w", err)
	}
	idx.ETag = etag
	return nil
}

// ReadRecord returns the workflow's record, or ErrNotFound.
func (inv *Store) ReadRecord(ctx context.Context, workflow string) (*Record, error) {
	var rec Record
	etag, err := inv.get(ctx, recordKey(workflow), &rec)
	if err != nil {
		return nil, fmt.Errorf("read inventory record %s: %w", workflow, err)
	}
	rec.ETag = etag
	return &rec, nil
}

// WriteRecord writes rec over the version it was read at (or creates it when
// rec.ETag is empty) and updates rec.ETag; ErrConflict if it changed since.
func (inv *Store) WriteRecord(ctx context.Context, rec *Record) error {
	etag, err := inv.put(ctx, recordKey(rec.Workflow), rec, rec.ETag)
	if err != nil {
		return fmt.Errorf("write inventory record %s: %w", rec.Workflow, err)
	}
	rec.ETag = etag
	return nil
}

// DeleteRecord removes the workflow's record; a missing record is success.
func (inv *Store) DeleteRecord(ctx context.Context, workflow string) error {
	_, err := inv.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(inv.bucket),
		Key:    aws.String(recordKey(workflow)),
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
func (inv *Store) ListRunKeys(ctx context.Context, workflow string, stage int, startAfter string) ([]string, error) {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(inv.bucket),
		Prefix: aws.String(runPrefix(workflow, stage)),
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
func (inv *Store) ReadRun(ctx context.Context, key string, v any) error {
	if _, err := inv.get(ctx, key, v); err != nil {
		return fmt.Errorf("read run record %s: %w", key, err)
	}
	return nil
}

// ListRecords returns the names of every workflow that has a record, for
// audits that must not trust the index alone.
func (inv *Store) ListRecords(ctx context.Context) ([]string, error) {
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
			if name, ok := recordName(aws.ToString(o.Key)); ok {
				names = append(names, name)
			}
		}
	}
	return names, nil
}

func (inv *Store) noBucket() error {
	return fmt.Errorf("state bucket %s does not exist: run 'agent bootstrap' first, or pass the right --state-bucket", inv.bucket)
}

func (inv *Store) get(ctx context.Context, key string, v any) (etag string, err error) {
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
func (inv *Store) put(ctx context.Context, key string, v any, etag string) (string, error) {
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
func (inv *Store) holds(ctx context.Context, key string, data []byte) (string, bool) {
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
