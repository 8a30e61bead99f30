package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Memory is an inventory held in memory with the Store's semantics: every
// value is stored encoded (a read never aliases a write), writes are
// conditional on the version read (ErrConflict otherwise), and a missing
// record is ErrNotFound. The reconcile state machine is unit-tested against
// it; the conformance tests in this package run the same checks against both.
type Memory struct {
	mu      sync.Mutex
	objects map[string]memoryObject
	version int
}

type memoryObject struct {
	data []byte
	etag string
}

// NewMemory returns an empty in-memory inventory.
func NewMemory() *Memory { return &Memory{objects: map[string]memoryObject{}} }

// Bucket names the store in messages, as Store.Bucket does.
func (m *Memory) Bucket() string { return "memory" }

// ReadIndex returns the index; a missing index is an empty one (ETag "").
func (m *Memory) ReadIndex(_ context.Context) (*Index, error) {
	idx := &Index{}
	etag, err := m.get(indexKey, idx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("read inventory index: %w", err)
	}
	if idx.Workflows == nil {
		idx.Workflows = map[string]IndexEntry{}
	}
	idx.ETag = etag
	return idx, nil
}

// WriteIndex writes idx over the version it was read at; see Store.WriteIndex.
func (m *Memory) WriteIndex(_ context.Context, idx *Index) error {
	etag, err := m.put(indexKey, idx, idx.ETag)
	if err != nil {
		return fmt.Errorf("write inventory index: %w", err)
	}
	idx.ETag = etag
	return nil
}

// ReadRecord returns the workflow's record, or ErrNotFound.
func (m *Memory) ReadRecord(_ context.Context, workflow string) (*Record, error) {
	var rec Record
	etag, err := m.get(recordKey(workflow), &rec)
	if err != nil {
		return nil, fmt.Errorf("read inventory record %s: %w", workflow, err)
	}
	rec.ETag = etag
	return &rec, nil
}

// WriteRecord writes rec over the version it was read at; see Store.WriteRecord.
func (m *Memory) WriteRecord(_ context.Context, rec *Record) error {
	etag, err := m.put(recordKey(rec.Workflow), rec, rec.ETag)
	if err != nil {
		return fmt.Errorf("write inventory record %s: %w", rec.Workflow, err)
	}
	rec.ETag = etag
	return nil
}

// DeleteRecord removes the workflow's record; a missing record is success.
func (m *Memory) DeleteRecord(_ context.Context, workflow string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, recordKey(workflow))
	return nil
}

// ListRecords returns the names of every workflow that has a record, sorted.
func (m *Memory) ListRecords(_ context.Context) ([]string, error) {
	var names []string
	for _, key := range m.keys(recordPrefix) {
		if name, ok := recordName(key); ok {
			names = append(names, name)
		}
	}
	return names, nil
}

// PutRun stores a run record under key, as a runner would in the state bucket.
func (m *Memory) PutRun(key string, v any) error {
	_, err := m.put(key, v, "")
	return err
}

// ListRunKeys returns the run-record keys of one stage after startAfter,
// oldest first; see Store.ListRunKeys.
func (m *Memory) ListRunKeys(_ context.Context, workflow string, stage int, startAfter string) ([]string, error) {
	keys := m.keys(runPrefix(workflow, stage))
	return slices.DeleteFunc(keys, func(k string) bool { return k <= startAfter }), nil
}

// ReadRun decodes the run record at key into v.
func (m *Memory) ReadRun(_ context.Context, key string, v any) error {
	if _, err := m.get(key, v); err != nil {
		return fmt.Errorf("read run record %s: %w", key, err)
	}
	return nil
}

func (m *Memory) keys(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // S3 lists keys in UTF-8 binary order
	return keys
}

func (m *Memory) get(key string, v any) (string, error) {
	m.mu.Lock()
	o, ok := m.objects[key]
	m.mu.Unlock()
	if !ok {
		return "", ErrNotFound
	}
	if err := json.Unmarshal(o.data, v); err != nil {
		return "", fmt.Errorf("decode %s: %w", key, err)
	}
	return o.etag, nil
}

// put writes v at key only over version etag, or only if key is missing when
// etag is empty: If-Match and If-None-Match: * as the Store sends them.
func (m *Memory) put(key string, v any, etag string) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.objects[key]; ok != (etag != "") || ok && o.etag != etag {
		return "", ErrConflict
	}
	m.version++
	o := memoryObject{data: data, etag: strconv.Quote(strconv.Itoa(m.version))}
	m.objects[key] = o
	return o.etag, nil
}
