package runner_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/runner"
)

// writeData writes size bytes of incompressible data to a new file under
// dir, streaming, and returns its path and SHA-256.
func writeData(tb testing.TB, dir string, size int64) (string, [32]byte) {
	tb.Helper()
	f, err := os.CreateTemp(dir, "data-*")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for left := size; left > 0; left -= int64(len(block)) {
		for i := 0; i < len(block); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				block[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := w.Write(block[:min(int64(len(block)), left)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return f.Name(), sum
}

// putFile uploads a local file in one PutObject (the SDK streams a file body).
func putFile(tb testing.TB, client *s3.Client, bucket, key, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := client.PutObject(tb.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: f}); err != nil {
		tb.Fatal(err)
	}
}

// objectHash streams an object through SHA-256.
func objectHash(tb testing.TB, client *s3.Client, bucket, key string) (int64, [32]byte) {
	tb.Helper()
	out, err := client.GetObject(tb.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum
}

// TestRunLargeFileMemory processes a 200 MB file with cp in a runner
// process of its own and checks its peak resident memory: downloads stream
// to the file and uploads read it part by part, so the peak must stay far
// below the file's size.
func TestRunLargeFileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB through the emulator")
	}
	const size = 200 << 20
	const limitKiB = 100 << 10
	s := newStage(t, stageOptions{})
	data, sum := writeData(t, t.TempDir(), size)
	putFile(t, s.s3, s.in, "big/data.bin", data)
	os.Remove(data)
	s.send("big/data.bin")

	bin := filepath.Join(t.TempDir(), "runnerproc")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/runnerproc").CombinedOutput(); err != nil {
		t.Fatalf("build runnerproc: %v\n%s", err, out)
	}
	// The process holds the task role's credentials, as ECS hands them to
	// a task, and talks to kumo through the AWS rules.
	creds, err := s.aws.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_ENDPOINT_URL=" + aws.ToString(s.aws.BaseEndpoint), "AWS_REGION=" + testenv.Region,
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"AWS_SESSION_TOKEN=" + creds.SessionToken,
		"CLOUDPIPE_QUEUE_URL=" + s.cfg.QueueURL, "CLOUDPIPE_INPUT_BUCKET=" + s.in, "CLOUDPIPE_OUTPUT_BUCKET=" + s.out,
		"CLOUDPIPE_RUN_COMMAND=cp $input $output", "CLOUDPIPE_INPUT_PATH=" + s.cfg.InputPath,
		"CLOUDPIPE_OUTPUT_PATH=" + s.cfg.OutputPath, "CLOUDPIPE_ALGORITHM=copy",
		"CLOUDPIPE_STATE_BUCKET=" + s.state, "CLOUDPIPE_WORKFLOW=" + s.name, "CLOUDPIPE_STAGE=" + strconv.Itoa(s.cfg.Stage),
		"CLOUDPIPE_WAIT_TIME=1", "CLOUDPIPE_IDLE_TIMEOUT=1", "CLOUDPIPE_TEMP_DIR=" + s.cfg.TempDir,
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// VmHWM is the peak resident set so far, so the last reading before the
	// process exits is its peak, give or take its last 20 ms (spent deleting
	// the message and writing the record). getrusage's maxrss is no use
	// here: Linux folds into it the memory of the process image that exec
	// replaced, which is this test process, emulator included.
	var hwm int64
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			if kib := vmHWM(cmd.Process.Pid); kib > hwm {
				hwm = kib
			}
		}
	}
	if err != nil {
		t.Fatalf("runner process: %v\n%s", err, stderr.String())
	}
	t.Logf("200 MB processed in %v; runner peak RSS (VmHWM) %d KiB", time.Since(start).Round(time.Millisecond), hwm)
	switch {
	case hwm == 0:
		t.Error("no VmHWM read from /proc")
	case hwm >= limitKiB:
		t.Errorf("runner peak RSS %d KiB, want < %d KiB", hwm, limitKiB)
	}

	n, got := objectHash(t, s.s3, s.out, "big/Result-copy-data.bin")
	if n != size || got != sum {
		t.Errorf("result: %d bytes, sha256 %x; want %d bytes, %x", n, got, size, sum)
	}
	recs := s.records()
	if len(recs) != 1 || recs[0].Outcome != contract.OutcomeOK || recs[0].Bytes != size || recs[0].ResultBytes != size {
		t.Errorf("records %+v, want one ok run of %d bytes", recs, size)
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

// vmHWM reads the peak resident set size (KiB) from /proc/<pid>/status, or 0.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

var transferMiB = flag.Int64("transfer-mib", 256, "object size of BenchmarkRunnerTransfer in MiB (1024 for the reported figure)")

// BenchmarkRunnerTransfer moves one object (-transfer-mib, default 256 MiB)
// down to a file and back up, once with the runner's transfer code and once
// with plain GetObject and PutObject, and reports both throughputs (bytes
// moved down and up per second) and their ratio.
//
// Each of the timed steps starts with no dirty pages (sync) and the two
// sides take turns going first, so that neither pays for the other's
// writeback: when the runner always went first it was charged for flushing
// the object the benchmark had just written, and measured at half of raw
// for the same download.
func BenchmarkRunnerTransfer(b *testing.B) {
	size := *transferMiB << 20
	// kumo runs as a process of its own: in the test binary's heap, the
	// emulator's garbage collection of the benchmark's big bodies is
	// charged to whichever side happens to run then.
	s := newStage(b, stageOptions{kumoURL: testenv.KumoProcess(b, testenv.KumoProcessOptions{})})
	dir := b.TempDir()
	data, _ := writeData(b, dir, size)
	putFile(b, s.s3, s.in, "bench/data.bin", data)
	os.Remove(data)
	tr, err := runner.NewTransfer(s.aws, s.cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	runnerFile, rawFile := filepath.Join(dir, "runner"), filepath.Join(dir, "raw")
	timed := func(step func()) time.Duration {
		b.StopTimer()
		syscall.Sync()
		b.StartTimer()
		start := time.Now()
		step()
		return time.Since(start)
	}
	var runnerDown, runnerUp, rawDown, rawUp, rawMultiUp time.Duration
	b.SetBytes(2 * size)
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("bench/out-%d", i)
		runnerSide := func() {
			runnerDown += timed(func() {
				f, err := os.Create(runnerFile)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if n, err := tr.Download(ctx, s.in, "bench/data.bin", f); err != nil || n != size {
					b.Fatalf("download: %d bytes, %v", n, err)
				}
			})
			runnerUp += timed(func() {
				if _, dup, err := tr.Upload(ctx, runnerFile, s.out, key+"-runner"); err != nil || dup {
					b.Fatalf("upload: %v (duplicate %v)", err, dup)
				}
			})
		}
		rawSide := func() {
			rawDown += timed(func() { rawDownload(b, s.s3, s.in, "bench/data.bin", rawFile) })
			rawUp += timed(func() { rawUpload(b, s.s3, rawFile, s.out, key+"-raw") })
		}
		if i%2 == 0 {
			runnerSide()
			rawSide()
		} else {
			rawSide()
			runnerSide()
		}
		rawMultiUp += timed(func() { rawMultipart(b, s.s3, rawFile, s.out, key+"-mpu", runner.DefaultPartSize) })

		b.StopTimer()
		for _, k := range []string{key + "-runner", key + "-raw", key + "-mpu"} {
			if _, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.out, Key: aws.String(k)}); err != nil {
				b.Fatal(err)
			}
		}
		os.Remove(runnerFile)
		os.Remove(rawFile)
		b.StartTimer()
	}
	mbps := func(bytes int64, d time.Duration) float64 { return float64(bytes*int64(b.N)) / 1e6 / d.Seconds() }
	runnerMBps, rawMBps := mbps(2*size, runnerDown+runnerUp), mbps(2*size, rawDown+rawUp)
	b.ReportMetric(runnerMBps, "runner_MB/s")
	b.ReportMetric(rawMBps, "raw_MB/s")
	b.ReportMetric(runnerMBps/rawMBps, "ratio")
	b.ReportMetric(mbps(size, runnerDown)/mbps(size, rawDown), "down_ratio")
	b.ReportMetric(mbps(size, runnerUp)/mbps(size, rawUp), "up_ratio")
	// The runner uploads big files in parts; an emulator may handle parts
	// much worse than one PUT (kumo reads each part whole, hashes it, and
	// at completion copies and hashes the whole object again): this ratio
	// against plain SDK multipart calls shows what the runner's own code
	// costs.
	b.ReportMetric(mbps(size, runnerUp)/mbps(size, rawMultiUp), "up_vs_multipart_ratio")
}

// rawDownload is the baseline download: GetObject streamed to a file.
func rawDownload(b *testing.B, client *s3.Client, bucket, key, path string) {
	out, err := client.GetObject(b.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		b.Fatal(err)
	}
	defer out.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, out.Body); err != nil {
		b.Fatal(err)
	}
}

// rawUpload is the baseline upload: one PutObject of the file.
func rawUpload(b *testing.B, client *s3.Client, path, bucket, key string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	_, err = client.PutObject(b.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: f, IfNoneMatch: aws.String("*")})
	if err != nil {
		b.Fatal(err)
	}
}

// rawMultipart uploads the file at path in parts of partSize, one after the
// other, with plain SDK calls, and returns the time taken.
func rawMultipart(b *testing.B, client *s3.Client, path, bucket, key string, partSize int64) time.Duration {
	ctx := b.Context()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	mpu, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		b.Fatal(err)
	}
	var parts []s3types.CompletedPart
	for n, off := int32(1), int64(0); off < fi.Size(); n, off = n+1, off+partSize {
		out, err := client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: mpu.UploadId,
			PartNumber: aws.Int32(n), Body: io.NewSectionReader(f, off, min(partSize, fi.Size()-off))})
		if err != nil {
			b.Fatal(err)
		}
		parts = append(parts, s3types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: mpu.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}, IfNoneMatch: aws.String("*")})
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
