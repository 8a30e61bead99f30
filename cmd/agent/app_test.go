package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
	"github.com/cloudpipe/cloudpipe/workflow"
)

func appConfig(t *testing.T, keyPEM string) Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(file, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Repo = "https://github.com/o/r.git"
	cfg.GitHubAppID, cfg.GitHubInstallationID, cfg.GitHubAppKeyFile = 1, 2, file
	return cfg
}

// The App's key comes from its file, an App and a token exclude each other,
// and a bad key is an error naming its flag that never quotes the key.
func TestReadApp(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	const bad = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWJ1dC1icm9rZW4=\n-----END RSA PRIVATE KEY-----\n"

	cfg := appConfig(t, good)
	app, err := readApp(t.Context(), cfg, aws.Config{}, secret.Value{})
	if err != nil || app == nil || app.ID != 1 || app.InstallationID != 2 || app.PrivateKey.Reveal() != good {
		t.Fatalf("readApp = %v, %v", app, err)
	}
	if _, err := newStatusSink(cfg, secret.Value{}, app, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("newStatusSink with a good app: %v", err)
	}

	_, err = readApp(t.Context(), cfg, aws.Config{}, secret.New("a-token"))
	if err == nil || !strings.Contains(err.Error(), "--github-app-id") || !strings.Contains(err.Error(), "CLOUDPIPE_GITHUB_TOKEN") {
		t.Errorf("readApp with a token too = %v, want an error naming both", err)
	}
	var u usageError
	if !errors.As(err, &u) {
		t.Errorf("readApp with a token too: %T is not a usage error", err)
	}

	cfg = appConfig(t, bad)
	app, err = readApp(t.Context(), cfg, aws.Config{}, secret.Value{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newStatusSink(cfg, secret.Value{}, app, slog.New(slog.DiscardHandler))
	if err == nil || !strings.HasPrefix(err.Error(), "--github-app-key-file: ") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("newStatusSink with a bad key = %v, want an error naming the flag", err)
	}

	cfg.GitHubAppKeyFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := readApp(t.Context(), cfg, aws.Config{}, secret.Value{}); err == nil || !strings.Contains(err.Error(), "--github-app-key-file") {
		t.Errorf("readApp with a missing file = %v", err)
	}
	if app, err := readApp(t.Context(), DefaultConfig(), aws.Config{}, secret.New("t")); app != nil || err != nil {
		t.Errorf("readApp without an app = %v, %v", app, err)
	}
}

// TestAppReadsPrivateRepo reads a private config repository on Gitea as
// the agent does with a GitHub App: the installation token from the
// exchange (testenv.AppExchange hands out a real Gitea token) is the
// basic-auth password of every clone and fetch, a short-lived one is
// renewed for each, and without it Gitea refuses. The token is in no
// error, log line or file of the Git cache.
func TestAppReadsPrivateRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea")
	}
	g := testenv.Gitea(t)
	name := testenv.UniqueName(t)
	g.CreateRepo(t, name)
	alg, err := os.ReadFile(filepath.Join("..", "..", "algorithms", "sort-lines.json"))
	if err != nil {
		t.Fatal(err)
	}
	workflowFile := func(in string) string {
		return `{"input_s3_name": "` + in + `-in", "output_s3_name": "` + in + `-out", "region": "us-east-1",
 "process": {"type": "single_run", "algorithms": [{"name": "sort-lines", "port": [], "variables": {}}]}}`
	}
	g.CommitFiles(t, name, testenv.ChangeFiles{Message: "first", Write: map[string]string{
		"algorithms/sort-lines.json": string(alg),
		"workflows/first.json":       workflowFile("first"),
	}})
	g.MakePrivate(t, name)
	gitea, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	key, pemKey := testenv.NewAppKey(t)
	_, otherPEM := testenv.NewAppKey(t)

	config := func(t *testing.T, keyPEM, apiURL string) Config {
		cfg := appConfig(t, keyPEM)
		cfg.GitHubAppID, cfg.GitHubInstallationID = 123, 456
		cfg.Repo, cfg.GitHubRepo, cfg.GitHubAPI = g.CloneURL(name), g.RepoName(name), apiURL
		cfg.CacheDir = t.TempDir()
		return cfg
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// openAsApp opens the private repository as the agent does with an
	// App whose exchange is as, signing with pemKey.
	openAsApp := func(t *testing.T, as *testenv.AppExchange, pemKey string) (Config, *pipesync.Repo) {
		t.Helper()
		srv := httptest.NewServer(as.Handler(gitea))
		t.Cleanup(srv.Close)
		cfg := config(t, pemKey, srv.URL+"/api/v1/")
		app, err := readApp(t.Context(), cfg, aws.Config{}, secret.Value{})
		if err != nil {
			t.Fatal(err)
		}
		sink, err := newStatusSink(cfg, secret.Value{}, app, log)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := openRepoWithAuth(t.Context(), cfg, sink.git)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, repo
	}
	var errs []error
	noToken := func(t *testing.T, cfg Config) {
		t.Helper()
		for _, err := range errs {
			if strings.Contains(err.Error(), g.Token) {
				t.Errorf("an error shows the token: %v", err)
			}
		}
		if strings.Contains(logs.String(), g.Token) {
			t.Error("the token is in the log")
		}
		files := 0
		err := filepath.WalkDir(cfg.CacheDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			files++
			if bytes.Contains(data, []byte(g.Token)) {
				t.Errorf("%s holds the token", p)
			}
			return err
		})
		if err != nil || files == 0 {
			t.Fatalf("walk the cache: %d files, %v", files, err)
		}
	}

	t.Run("anonymous", func(t *testing.T) {
		cfg := config(t, pemKey, g.APIURL)
		repo, err := openRepo(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = repo.Load(t.Context(), "")
		if !errors.Is(err, gitsource.ErrAuthFailed) {
			t.Fatalf("Load without a token = %v; want Gitea to refuse it (ErrAuthFailed)", err)
		}
	})

	for _, tc := range []struct {
		name      string
		expiresIn time.Duration
		// exchanges after two Loads, each a Fetch and a Head
		wantExchanges int
	}{
		{"hour token", time.Hour, 1},
		// Within ghinstallation's minute of margin: every operation renews.
		{"short-lived token", 30 * time.Second, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := &testenv.AppExchange{PublicKey: &key.PublicKey, AppID: 123, InstallationID: 456, Token: g.Token, ExpiresIn: tc.expiresIn}
			cfg, repo := openAsApp(t, as, pemKey)
			// The clone: the cache is empty.
			head := g.BranchCommit(t, name, "main")
			d, err := repo.Load(t.Context(), "")
			if err != nil {
				errs = append(errs, err)
				t.Fatalf("first Load: %v", err)
			}
			if d.Commit != head || len(d.Workflows) == 0 || len(d.Problems) != 0 {
				t.Fatalf("first Load: commit %s, %d workflows, problems %v; want %s and valid workflows", d.Commit, len(d.Workflows), d.Problems, head)
			}
			// A new commit is fetched.
			wf := testenv.UniqueName(t)
			next := g.CommitFiles(t, name, testenv.ChangeFiles{Message: tc.name, Write: map[string]string{
				"workflows/" + wf + ".json": workflowFile(wf),
			}})
			before := len(d.Workflows)
			if d, err = repo.Load(t.Context(), ""); err != nil {
				errs = append(errs, err)
				t.Fatalf("second Load: %v", err)
			}
			if d.Commit != next || len(d.Workflows) != before+1 || !slices.ContainsFunc(d.Workflows, func(w *workflow.Workflow) bool { return w.Name == wf }) {
				t.Fatalf("second Load: commit %s, %d workflows; want %s and %d with %s", d.Commit, len(d.Workflows), next, before+1, wf)
			}
			exchanges, _, problems := as.Counts()
			if exchanges != tc.wantExchanges {
				t.Errorf("%d token exchanges for two Loads; want %d", exchanges, tc.wantExchanges)
			}
			for _, p := range problems {
				t.Error(p)
			}
			noToken(t, cfg)
		})
	}

	t.Run("exchange refused", func(t *testing.T) {
		// The key is not the App's: GitHub refuses the exchange, and the
		// fetch fails naming the App's flags.
		as := &testenv.AppExchange{PublicKey: &key.PublicKey, AppID: 123, InstallationID: 456, Token: g.Token, ExpiresIn: time.Hour}
		_, repo := openAsApp(t, as, otherPEM)
		_, err := repo.Load(t.Context(), "")
		if !errors.Is(err, gitsource.ErrTokenSource) {
			t.Fatalf("Load with a refused exchange = %v; want ErrTokenSource", err)
		}
		errs = append(errs, err)
		for _, want := range []string{"--github-app-id 123", "--github-installation-id 456", "--github-app-key-file", "401"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Load = %v; want it to say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("the error quotes the key: %v", err)
		}
		t.Logf("refused exchange: %v", err)
	})
}
