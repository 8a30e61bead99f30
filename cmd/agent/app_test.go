package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cloudpipe/cloudpipe/internal/secret"
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
