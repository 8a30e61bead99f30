package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// Placeholders of run_command, replaced by the local paths.
const (
	inputVar  = "$input"
	outputVar = "$output"
)

// stepError is why a run failed: the step, a message safe to show users
// (run records are read by whoever reads the commit statuses: no
// environment values, no credentials, no request IDs) and the full cause,
// which only goes to the task's log.
type stepError struct {
	step string // "download", "run", "upload", ...
	safe string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// safeMessage is the user-safe text of a run's error.
func safeMessage(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.step + ": " + se.safe
	}
	return "internal error"
}

func fail(step, safe string, err error) error {
	if err == nil {
		err = errors.New(safe)
	}
	return &stepError{step: step, safe: safe, err: err}
}

// run does the work of one message and fills rec's input, result and byte
// counts. It returns the parsed message (for the record key) and the error
// that made the run fail.
func (w *worker) run(ctx context.Context, body string, rec *contract.RunRecord, log *slog.Logger) (contract.Message, error) {
	msg, err := contract.DecodeMessage(body)
	if err != nil {
		return msg, fail("message", "malformed message", err)
	}
	rec.Input = "s3://" + msg.Bucket + "/" + msg.Key
	if w.c.InputBucket != "" && msg.Bucket != w.c.InputBucket {
		return msg, fail("message", "the message names another bucket than the stage's input", nil)
	}
	name, err := localName(msg.Key)
	if err != nil {
		return msg, fail("message", err.Error(), err)
	}

	var cleanup []string // paths this run created, removed at the end
	defer func() {
		for _, p := range cleanup {
			if err := os.RemoveAll(p); err != nil {
				log.Warn("temporary file not removed", "err", err)
			}
		}
	}()

	in, err := inputFile(w.c.InputPath, name)
	if err != nil {
		return msg, fail("download", "cannot prepare the input path", err)
	}
	// O_EXCL: the runner never overwrites a file it did not create (a
	// file of the image that happens to have the object's name).
	f, err := os.OpenFile(in, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return msg, fail("download", "cannot create the input file", err)
	}
	cleanup = append(cleanup, in)
	rec.Bytes, err = w.xfer.download(ctx, msg.Bucket, msg.Key, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return msg, fail("download", apiSummary(ctx, err), err)
	}

	out, err := w.prepareOutput(name, in)
	if err != nil {
		return msg, fail("run", "cannot prepare the output path", err)
	}
	if out.path != "" {
		cleanup = append(cleanup, out.path)
	}
	argv := commandArgs(w.c.RunCommand, in, out.path)
	if err := runCommand(ctx, argv, w.env, log); err != nil {
		cleanup = append(cleanup, out.created()...)
		return msg, fail("run", commandSummary(ctx, err), err)
	}

	src, zipped, err := out.collect(w.c.TempDir)
	cleanup = append(cleanup, out.created()...)
	if zipped && src != "" {
		cleanup = append(cleanup, src)
	}
	if err != nil {
		return msg, fail("output", err.Error(), err)
	}
	key := ResultKey(msg.Key, w.c.Algorithm, zipped)
	rec.ResultBytes, rec.Duplicate, err = w.xfer.upload(ctx, src, w.c.OutputBucket, key, w.resultMetadata(msg))
	if err != nil {
		return msg, fail("upload", apiSummary(ctx, err), err)
	}
	rec.Result = "s3://" + w.c.OutputBucket + "/" + key
	return msg, nil
}

// resultMetadata is stored with each result, so a result can be traced to
// its input version. Header values must be ASCII: others are left out.
func (w *worker) resultMetadata(msg contract.Message) map[string]string {
	md := map[string]string{"cloudpipe-workflow": w.c.Workflow, "cloudpipe-stage": fmt.Sprint(w.c.Stage)}
	if isASCII(msg.ETag) {
		md["cloudpipe-input-etag"] = msg.ETag
	}
	return md
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ResultKey is the key of the result of the object key:
// <key's prefix>/Result-<algorithm>-<key's base name>, plus ".zip" for a
// zipped directory. "in/a b.txt" with sort-lines gives
// "in/Result-sort-lines-a b.txt"; a key without "/" gives a key at the top.
func ResultKey(key, algorithm string, zipped bool) string {
	dir, base := "", key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		dir, base = key[:i+1], key[i+1:]
	}
	k := dir + "Result-" + algorithm + "-" + base
	if zipped {
		k += ".zip"
	}
	return k
}

// maxNameBytes bounds local file names, below the usual 255-byte limit to
// leave room for the "Result-<algorithm>-" prefix of output files.
const maxNameBytes = 160

// localName turns an object key into a file name that is safe on its own:
// the key's last path element (so "../../etc/passwd" is "passwd"), with
// control characters and invalid UTF-8 replaced by "_" and the length
// bounded (keeping the extension). Spaces, "+", quotes, "$(...)", ";" and
// Unicode are kept: no shell ever sees the name, and the command gets it as
// one argument inside an absolute path, so it cannot become an option
// either. Keys whose last element is empty, "." or ".." are refused.
func localName(key string) (string, error) {
	if strings.HasSuffix(key, "/") {
		return "", errors.New("the key names a folder, not a file")
	}
	base := path.Base(path.Clean("/" + key))
	var b strings.Builder
	for _, r := range base {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			r = '_' // also replaces each invalid UTF-8 byte, read as U+FFFD
		}
		b.WriteRune(r)
	}
	name := b.String()
	if len(name) > maxNameBytes {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		name = cutUTF8(name[:len(name)-len(ext)], maxNameBytes-len(ext)) + ext
	}
	switch name {
	case "", ".", "..", "/":
		return "", errors.New("the key has no usable file name")
	}
	return name, nil
}

// cutUTF8 returns s cut to at most n bytes, at a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}

// isDirPath reports whether p means a directory: it ends in "/" or is an
// existing directory.
func isDirPath(p string) bool {
	if strings.HasSuffix(p, "/") {
		return true
	}
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// inputFile returns where the object goes: inside InputPath when it is a
// directory, else InputPath itself. Parent directories are created.
func inputFile(inputPath, name string) (string, error) {
	p := inputPath
	if isDirPath(inputPath) {
		p = filepath.Join(inputPath, name)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	// A stale file from an earlier run of this process: never, since runs
	// clean up; from the image: kept, and O_EXCL refuses to overwrite it.
	return p, nil
}

// commandArgs splits run_command into fields and replaces "$input" and
// "$output" in each with the local paths, in one pass (a path holding the
// text "$output" is not replaced again) and without splitting again, so a
// path with spaces stays one argument.
func commandArgs(runCommand, in, out string) []string {
	r := strings.NewReplacer(inputVar, in, outputVar, out)
	fields := strings.Fields(runCommand)
	argv := make([]string, len(fields))
	for i, f := range fields {
		argv[i] = r.Replace(f)
	}
	return argv
}

// usesOutput reports whether run_command names $output.
func usesOutput(runCommand string) bool {
	return strings.Contains(runCommand, outputVar)
}

// commandSummary is the user-safe text of a failed command.
func commandSummary(ctx context.Context, err error) string {
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return errInterrupted.Error()
	case errors.As(err, &exit):
		return exit.String() // "exit status 3", "signal: killed"
	case errors.Is(err, exec.ErrNotFound):
		return "executable not found"
	case errors.Is(err, os.ErrPermission):
		return "executable not permitted"
	default:
		return "command did not start"
	}
}

// runCommand runs argv with the environment env, streaming its output to
// log line by line. When ctx ends, the command's process group gets
// SIGTERM, then SIGKILL after killDelay, so a shell's children stop too.
func runCommand(ctx context.Context, argv, env []string, log *slog.Logger) error {
	if len(argv) == 0 {
		return errors.New("empty run_command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	stdout := &lineLogger{log: log, stream: "stdout"}
	stderr := &lineLogger{log: log, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setProcessGroup(cmd)
	cmd.WaitDelay = killDelay
	start := time.Now()
	log.Info("command started", "program", argv[0])
	err := cmd.Run()
	stdout.flush()
	stderr.flush()
	exitCode := -1 // did not start, or killed by a signal
	if cmd.ProcessState != nil {
		exitCode = cmd.ProcessState.ExitCode()
	}
	log.Info("command finished", "duration", time.Since(start), "exit_code", exitCode)
	return err
}

// killDelay is how long a cancelled command gets between SIGTERM and SIGKILL.
const killDelay = 10 * time.Second

// algorithmEnviron is the environment of the algorithm's process: the
// runner's, except that the keys of a task-credentials secret, which reach
// the container under cloudpipe's names so that the runner itself keeps
// signing as the task role, are given under the standard AWS names, in
// place of any keys already there (a session token of other keys would not
// match them).
func algorithmEnviron(environ []string) []string {
	keys := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if std, ok := contract.AlgorithmCredentials[name]; ok && value != "" {
			keys[std] = value
		}
	}
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		_, ours := contract.AlgorithmCredentials[name]
		replaced := len(keys) > 0 && (name == "AWS_ACCESS_KEY_ID" || name == "AWS_SECRET_ACCESS_KEY" || name == "AWS_SESSION_TOKEN")
		if !ours && !replaced {
			out = append(out, kv)
		}
	}
	for _, std := range slices.Sorted(maps.Keys(keys)) {
		out = append(out, std+"="+keys[std])
	}
	return out
}
