package runner_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
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
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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

var transferMiB = flag.Int64("transfer-mib", 256, "object size of BenchmarkRunnerTransfer in MiB")

// BenchmarkRunnerTransfer moves one object (-transfer-mib, default 256 MiB)
// down to a file and back up, once with the runner's transfer code and once
// with the tool a user would otherwise reach for, the AWS CLI (`aws s3 cp`,
// whose transfer library, s3transfer, the original Python runner used), on
// the same emulator in the same run, with the same credentials. It reports
// each side's throughput each way and the runner's ratio to the CLI (goal:
// at least 1.0 each way).
//
// An `aws` process spends a second or more (several on a loaded machine)
// starting Python and loading botocore before it moves a byte, while the
// runner's code runs in a process already up: timing `aws` processes would
// flatter the runner, and subtracting a separately timed start-up was
// noise on a shared machine. So the CLI's commands run one after another
// in one warm Python process (testdata/awscli_loop.py), each as `aws` runs
// it, sharing one botocore session as a long-lived Python runner would.
//
// Each of the timed steps starts with no dirty pages (sync) and the two
// sides take turns going first, so that neither pays for the other's
// writeback: when the runner always went first it was charged for flushing
// the object the benchmark had just written, and measured at half of its
// peer for the same download.
//
// It runs on three servers, each a process of its own (in the test
// binary's heap, a server's garbage collection of the big bodies is
// charged to whichever side happens to run then):
//   - kumo, behind the stage's task role as the runner runs. kumo reads
//     every UploadPart body under its one storage lock, so it receives one
//     part at a time whatever either client's concurrency: uploads measure
//     the emulator more than the clients.
//   - gofakes3, which reads part bodies in parallel as S3 does, with
//     static credentials (it checks no signature). It still reads, hashes
//     and copies every body on the same two cores, and its upload rate
//     jumps between levels (from about 70 to about 230 MB/s on an idle
//     machine, for either client), so a run's ratio depends on which
//     uploads fell on a slow one.
//   - nulls3 (internal/testenv/nulls3), which keeps no data: it drops what
//     it receives and serves one repeated block. The clients still sign
//     and checksum every part; the server's share of the cores is as
//     small as an HTTP server's can be, as S3's share of the client's
//     machine is nothing. This is the figure of the goal: the clients'
//     own speed.
func BenchmarkRunnerTransfer(b *testing.B) {
	size := *transferMiB << 20
	b.Run("kumo", func(b *testing.B) {
		raceCLI(b, newStage(b, stageOptions{kumoURL: testenv.KumoProcess(b, testenv.KumoProcessOptions{})}), size)
	})
	b.Run("gofakes3", func(b *testing.B) { raceCLI(b, staticStage(b, testenv.FakeS3Process(b)), size) })
	b.Run("nulls3", func(b *testing.B) { raceCLI(b, staticStage(b, testenv.NullS3Process(b)), size) })
}

// staticStage is a stage on the S3 endpoint url, which checks no
// signature: the runner and the CLI sign with the same static credentials.
func staticStage(b *testing.B, url string) *stage {
	cfg := aws.Config{
		Region:       testenv.Region,
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDBENCHMARK", "benchmark-secret", ""),
	}
	s := &stage{t: b, aws: cfg, s3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		in: "bench-in", out: "bench-out", cfg: runner.Config{S3UsePathStyle: true}}
	for _, bucket := range []string{s.in, s.out} {
		if _, err := s.s3.CreateBucket(b.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// raceCLI is BenchmarkRunnerTransfer's loop on the stage s: its task
// role's credentials, its input and output buckets, its runner settings.
func raceCLI(b *testing.B, s *stage, size int64) {
	cli := startCLI(b, s)
	dir := b.TempDir()
	data, _ := writeData(b, dir, size)
	putFile(b, s.s3, s.in, "bench/data.bin", data)
	os.Remove(data)
	tr, err := runner.NewTransfer(s.aws, s.cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	runnerFile, cliFile := filepath.Join(dir, "runner"), filepath.Join(dir, "cli")
	timed := func(step func()) time.Duration {
		b.StopTimer()
		syscall.Sync()
		b.StartTimer()
		start := time.Now()
		step()
		return time.Since(start)
	}
	var runnerDown, runnerUp, cliDown, cliUp time.Duration
	// Each iteration's rates, logged (go test -v) to tell a side that is
	// slower from a server whose rate jumps between levels.
	var each strings.Builder
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(size)/1e6/d.Seconds()) }
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
		cliSide := func() {
			cliDown += timed(func() { cli.cp("s3://"+s.in+"/bench/data.bin", cliFile) })
			cliUp += timed(func() { cli.cp(cliFile, "s3://"+s.out+"/"+key+"-cli") })
		}
		before := [4]time.Duration{runnerDown, runnerUp, cliDown, cliUp}
		if i%2 == 0 {
			runnerSide()
			cliSide()
		} else {
			cliSide()
			runnerSide()
		}
		fmt.Fprintf(&each, "\n  %d: down runner %s CLI %s, up runner %s CLI %s MB/s", i, rate(runnerDown-before[0]),
			rate(cliDown-before[2]), rate(runnerUp-before[1]), rate(cliUp-before[3]))

		b.StopTimer()
		if fi, err := os.Stat(cliFile); err != nil || fi.Size() != size {
			b.Fatalf("the CLI's download: %v, want %d bytes", err, size)
		}
		for _, k := range []string{key + "-runner", key + "-cli"} {
			head, err := s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.out, Key: aws.String(k)})
			if err != nil {
				b.Fatal(err)
			}
			if n := aws.ToInt64(head.ContentLength); n != size {
				b.Fatalf("%s: %d bytes uploaded, want %d", k, n, size)
			}
			if _, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.out, Key: aws.String(k)}); err != nil {
				b.Fatal(err)
			}
		}
		os.Remove(runnerFile)
		os.Remove(cliFile)
		b.StartTimer()
	}
	b.Logf("%d iterations:%s", b.N, each.String())
	mbps := func(d time.Duration) float64 { return float64(size*int64(b.N)) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(runnerDown), "runner_down_MB/s")
	b.ReportMetric(mbps(runnerUp), "runner_up_MB/s")
	b.ReportMetric(mbps(cliDown), "cli_down_MB/s")
	b.ReportMetric(mbps(cliUp), "cli_up_MB/s")
	b.ReportMetric(mbps(runnerDown)/mbps(cliDown), "cli_down_ratio")
	b.ReportMetric(mbps(runnerUp)/mbps(cliUp), "cli_up_ratio")
}

// awsCLI is testdata/awscli_loop.py: AWS CLI commands against the stage's
// emulator, signed with the stage's task role as the runner is, run one at
// a time in one Python process.
type awsCLI struct {
	b      *testing.B
	url    string
	in     io.Writer     // a JSON array of arguments a line
	done   *bufio.Reader // an exit status a line
	stderr *syncBuffer
}

// startCLI starts the CLI's process. The credentials go to it only, in its
// environment (never on a command line, where ps shows them, nor in a
// log); a config file of its own sets the region and path-style addressing
// ("bucket.127.0.0.1" does not resolve), so the user's ~/.aws plays no
// part.
func startCLI(b *testing.B, s *stage) *awsCLI {
	python, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(python, "-c", "import awscli").Run()
	}
	if err != nil {
		b.Fatalf("BenchmarkRunnerTransfer compares the runner with the AWS CLI, which python3 cannot import (pip install awscli): %v", err)
	}
	creds, err := s.aws.Credentials.Retrieve(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	conf := filepath.Join(b.TempDir(), "config")
	if err := os.WriteFile(conf, []byte("[default]\nregion = "+testenv.Region+"\ns3 =\n  addressing_style = path\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	env := []string{
		"AWS_CONFIG_FILE=" + conf, "AWS_SHARED_CREDENTIALS_FILE=" + conf + "-none",
		"AWS_DEFAULT_REGION=" + testenv.Region, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
	}
	if creds.SessionToken != "" {
		env = append(env, "AWS_SESSION_TOKEN="+creds.SessionToken)
	}
	// The rest of this process's environment minus its AWS settings: a
	// pyenv shim, for one, finds its interpreter through HOME or PYENV_*.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	doneR, doneW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	c := &awsCLI{b: b, url: aws.ToString(s.aws.BaseEndpoint), done: bufio.NewReader(doneR), stderr: new(syncBuffer)}
	cmd := exec.Command(python, filepath.Join("testdata", "awscli_loop.py"))
	cmd.Env, cmd.Stderr, cmd.ExtraFiles = env, c.stderr, []*os.File{doneW}
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	c.in = in
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	doneW.Close()
	b.Cleanup(func() {
		in.Close() // the loop ends at the end of its input
		if err := cmd.Wait(); err != nil {
			b.Errorf("awscli_loop.py: %v\n%s", err, c.stderr.String())
		}
		doneR.Close()
	})
	return c
}

// cp runs `aws s3 cp src dst` (one of them s3://...) with the CLI's
// default settings (8 MiB parts, 10 requests at a time) and waits for it.
func (c *awsCLI) cp(src, dst string) {
	args, _ := json.Marshal([]string{"--endpoint-url", c.url, "s3", "cp", "--only-show-errors", "--no-progress", src, dst})
	if _, err := c.in.Write(append(args, '\n')); err != nil {
		c.b.Fatalf("aws s3 cp %s %s: %v\n%s", src, dst, err, c.stderr.String())
	}
	rc, err := c.done.ReadString('\n')
	if err != nil || rc != "0\n" {
		c.b.Fatalf("aws s3 cp %s %s: exit status %q, %v\n%s", src, dst, strings.TrimSpace(rc), err, c.stderr.String())
	}
}
