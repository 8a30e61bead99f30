package provision_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// release writes an executable standing for one release of the agent and
// returns its path and SHA-256 (hex), as the agent names its release.
func release(t *testing.T, content string) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := provision.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// ensureAll ensures the stages at once, as a pass applies several workflows
// concurrently, each from its prev, and returns their resources.
func (e *env) ensureAll(p *provision.Provisioner, specs []provision.StageSpec, prev []provision.StageResources) []provision.StageResources {
	e.t.Helper()
	out := make([]provision.StageResources, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i := range specs {
		wg.Go(func() { out[i], errs[i] = p.EnsureStage(e.t.Context(), specs[i], prev[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			e.t.Fatalf("EnsureStage %s: %v", specs[i].Workflow, err)
		}
	}
	return out
}

// codeSHA256 is Lambda's CodeSha256 of zip.
func codeSHA256(zip []byte) string {
	sum := sha256.Sum256(zip)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestFunctionCodeStoredOncePerRelease deploys three stage functions at
// once: the release's package is stored in the state bucket once and every
// function made from it. A fresh agent of the same release (its executable
// gone, so it cannot zip it) changes nothing; a new release stores its
// package once and updates every function.
func TestFunctionCodeStoredOncePerRelease(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var specs []provision.StageSpec
	for _, suffix := range []string{"a", "b", "c"} {
		s := e.spec()
		s.Workflow = e.name + "-" + suffix
		s.InputBucket, s.OutputBucket = s.Workflow+"-in", s.Workflow+"-out"
		specs = append(specs, s)
	}
	agent := func(code *provision.LambdaCode) *provision.Provisioner {
		cfg := testenv.AsRole(e.cfg, testenv.AgentRole)
		e.calls.Attach(&cfg)
		o := e.opts
		o.LambdaCode = code
		return provision.New(cfg, o)
	}
	// codeWrites checks the pass's writes of code (S3.PutObject,
	// Lambda.CreateFunction, Lambda.UpdateFunctionCode) and returns the S3
	// keys the functions' code came from, one per CreateFunction or
	// UpdateFunctionCode.
	codeWrites := func(pass string, want map[string]int) []string {
		t.Helper()
		got := e.calls.WriteOps()
		maps.DeleteFunc(got, func(op string, _ int) bool {
			return op != "S3.PutObject" && op != "Lambda.CreateFunction" && op != "Lambda.UpdateFunctionCode"
		})
		if !maps.Equal(got, want) {
			t.Errorf("%s: code writes %v, want %v", pass, got, want)
		}
		var keys []string
		for _, in := range e.calls.Inputs("Lambda.CreateFunction") {
			c := in.(*lambda.CreateFunctionInput).Code
			if c.ZipFile != nil || aws.ToString(c.S3Bucket) != e.opts.StateBucket {
				t.Errorf("%s: CreateFunction sent its code inline or from another bucket: s3://%s, %d bytes", pass, aws.ToString(c.S3Bucket), len(c.ZipFile))
			}
			keys = append(keys, aws.ToString(c.S3Key))
		}
		for _, in := range e.calls.Inputs("Lambda.UpdateFunctionCode") {
			u := in.(*lambda.UpdateFunctionCodeInput)
			if u.ZipFile != nil || aws.ToString(u.S3Bucket) != e.opts.StateBucket {
				t.Errorf("%s: UpdateFunctionCode sent its code inline or from another bucket: s3://%s, %d bytes", pass, aws.ToString(u.S3Bucket), len(u.ZipFile))
			}
			keys = append(keys, aws.ToString(u.S3Key))
		}
		return keys
	}
	// stored checks the object at key: the zip of path, its hash beside it.
	stored := func(key, path string) string {
		t.Helper()
		zip, err := provision.LambdaZipFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &e.opts.StateBucket, Key: &key})
		if err != nil {
			t.Fatalf("the code object %s: %v", key, err)
		}
		defer out.Body.Close()
		body, err := io.ReadAll(out.Body)
		if err != nil || !bytes.Equal(body, zip) || out.Metadata["code-sha256"] != codeSHA256(zip) {
			t.Errorf("object %s: %d bytes (%v), code-sha256 %q; want the %d-byte zip, %q", key, len(body), err,
				out.Metadata["code-sha256"], len(zip), codeSHA256(zip))
		}
		return codeSHA256(zip)
	}

	path, sum := release(t, "#!/bin/sh\necho release 1\n")
	key := "lambda/" + sum + ".zip"
	e.calls.Reset()
	first := e.ensureAll(agent(provision.LambdaCodeFromFile(path, sum)), specs, make([]provision.StageResources, len(specs)))
	keys := codeWrites("first deploy", map[string]int{"S3.PutObject": 1, "Lambda.CreateFunction": 3})
	if put := e.calls.Inputs("S3.PutObject"); len(put) != 1 || aws.ToString(put[0].(*s3.PutObjectInput).Key) != key {
		t.Errorf("first deploy stored %d objects, want one, %s", len(put), key)
	}
	// One lookup of the object for the three functions.
	if n := e.calls.Ops()["S3.HeadObject"]; n != 1 {
		t.Errorf("first deploy looked the code object up %d times, want once", n)
	}
	if len(keys) != 3 || keys[0] != key || keys[1] != key || keys[2] != key {
		t.Errorf("first deploy: functions made from %v, want 3 from %s", keys, key)
	}
	hash := stored(key, path)
	for i, res := range first {
		if res.FunctionCodeSHA256 != hash {
			t.Errorf("%s: recorded CodeSha256 %q, want %q", specs[i].Workflow, res.FunctionCodeSHA256, hash)
		}
	}

	// The same release, by a fresh agent that could not zip its
	// executable: the stored object's hash is all it needs.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	again := e.ensureAll(agent(provision.LambdaCodeFromFile(path, sum)), specs, first)
	if got := e.calls.WriteOps(); len(got) != 0 || e.calls.Ops()["S3.HeadObject"] != 1 {
		t.Errorf("same release: writes %v and %d lookups of the code object, want no write and one lookup", got, e.calls.Ops()["S3.HeadObject"])
	}
	for i, res := range again {
		if res.FunctionCodeSHA256 != hash {
			t.Errorf("%s: recorded CodeSha256 %q after the same release, want %q", specs[i].Workflow, res.FunctionCodeSHA256, hash)
		}
	}

	// A new release: stored once, every function updated from it.
	path2, sum2 := release(t, "#!/bin/sh\necho release 2\n")
	key2 := "lambda/" + sum2 + ".zip"
	e.calls.Reset()
	upgraded := e.ensureAll(agent(provision.LambdaCodeFromFile(path2, sum2)), specs, again)
	keys = codeWrites("new release", map[string]int{"S3.PutObject": 1, "Lambda.UpdateFunctionCode": 3})
	if len(keys) != 3 || keys[0] != key2 || keys[1] != key2 || keys[2] != key2 {
		t.Errorf("new release: functions updated from %v, want 3 from %s", keys, key2)
	}
	hash2 := stored(key2, path2)
	for i, res := range upgraded {
		if res.FunctionCodeSHA256 != hash2 {
			t.Errorf("%s: recorded CodeSha256 %q after the new release, want %q", specs[i].Workflow, res.FunctionCodeSHA256, hash2)
		}
	}
}

// TestFunctionCodeWithoutRecordedHash: a record without the code's hash
// (an inventory from before it was kept) is judged by the function's own
// CodeSha256. kumo reports none for code from S3, so the function is
// updated once; then the hash is on record and nothing more happens. A
// function whose CodeSha256 matches (code sent inline, which kumo does
// hash, as AWS hashes either) is left alone.
func TestFunctionCodeWithoutRecordedHash(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	old := res
	old.FunctionCodeSHA256 = ""
	e.calls.Reset()
	res2 := e.ensure(spec, old)
	if got := e.calls.WriteOps(); !maps.Equal(got, map[string]int{"Lambda.UpdateFunctionCode": 1}) {
		t.Errorf("record without the hash: writes %v, want one UpdateFunctionCode", got)
	}
	if res2.FunctionCodeSHA256 != res.FunctionCodeSHA256 {
		t.Errorf("recorded CodeSha256 %q, want %q", res2.FunctionCodeSHA256, res.FunctionCodeSHA256)
	}
	e.calls.Reset()
	e.ensure(spec, res2)
	if got := e.calls.WriteOps(); len(got) != 0 {
		t.Errorf("after the update: writes %v, want none", got)
	}

	// A function made with its code inline, by an agent without a state
	// bucket, as agents did before the code went to S3.
	inline := e.spec()
	inline.Workflow = e.name + "-z"
	inline.InputBucket, inline.OutputBucket = inline.Workflow+"-in", inline.Workflow+"-out"
	o := e.opts
	o.StateBucket = ""
	cfg := testenv.AsRole(e.cfg, testenv.AgentRole)
	before, err := provision.New(cfg, o).EnsureStage(t.Context(), inline, provision.StageResources{})
	if err != nil {
		t.Fatal(err)
	}
	before.FunctionCodeSHA256 = ""
	e.calls.Reset()
	e.ensure(inline, before)
	if n := e.calls.Ops()["Lambda.UpdateFunctionCode"]; n != 0 {
		t.Errorf("function already running the package, no hash on record: %d UpdateFunctionCode, want 0", n)
	}
}
