package provision_test

import (
	"archive/zip"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

func TestLambdaZipFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent")
	content := []byte("\x7fELF not really")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := provision.LambdaZipFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := provision.LambdaZipFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("zipping the same file twice gave different bytes: every restart would re-upload the code")
	}
	zr, err := zip.NewReader(bytes.NewReader(a), int64(len(a)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" || zr.File[0].Mode().Perm() != 0o755 {
		t.Fatalf("zip holds %+v, want one executable bootstrap", zr.File)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("bootstrap = %q, %v; want %q", got, err, content)
	}
	if _, err := provision.LambdaZipFromFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("zipping a missing file succeeded")
	}
}

func TestCallerAccountLogsTheCall(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := provision.New(testenv.Kumo(t), provision.Options{Logger: log})
	got, err := p.CallerAccount(t.Context(), testenv.Region)
	if err != nil || got != kumoAccount {
		t.Errorf("CallerAccount = %q, %v; want %s", got, err, kumoAccount)
	}
	for _, want := range []string{`msg="aws call"`, "component=provision", "service=STS", "operation=GetCallerIdentity", "attempt=1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("debug log %q lacks %s", logs.String(), want)
		}
	}
}

// TestThrottlingRetried makes S3 answer SlowDown once; the retryer New
// installs retries it.
func TestThrottlingRetried(t *testing.T) {
	mod, seen := viaFaultProxy(t, func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Query().Has("tagging")
	}, 1, fault{
		status: http.StatusServiceUnavailable,
		header: map[string]string{"Content-Type": "application/xml"},
		body:   `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`,
	})
	e := newEnv(t, mod)
	e.ensure(e.spec(), provision.StageResources{})
	if got := seen.Load(); got < 2 {
		t.Errorf("%d GetBucketTagging requests, want the throttled one retried", got)
	}
}

// TestCallerAccountInARegionNotEnabled: a workflow in an opt-in region the
// account has not enabled fails with that said, not with AWS's "invalid
// security token", which names no region and reads like a credentials
// problem.
func TestCallerAccountInARegionNotEnabled(t *testing.T) {
	proxy, err := awsrules.New(testenv.KumoURL(t), awsrules.Options{DisabledRegions: []string{"af-south-1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	p := provision.New(testenv.KumoConfig(proxy.URL()), provision.Options{})
	if _, err := p.CallerAccount(t.Context(), testenv.Region); err != nil {
		t.Fatalf("the agent's region: %v", err)
	}
	_, err = p.CallerAccount(t.Context(), "af-south-1")
	if err == nil || !strings.Contains(err.Error(), "region af-south-1 rejects the agent's credentials") ||
		!strings.Contains(err.Error(), "not enabled in this account") {
		t.Errorf("an opt-in region not enabled: %v, want it said", err)
	}
}
