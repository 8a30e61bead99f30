package status_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/status"
)

// The token's own type is tested in internal/secret; this test checks that
// Options, which carries it, shows it nowhere either.
func TestOptionsNeverShowToken(t *testing.T) {
	const value = "s3cr3t-value"
	opts := status.Options{Repo: "o/r", Token: secret.New(value)}
	var texts []string
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		texts = append(texts, fmt.Sprintf(format, opts))
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("options", "options", opts)
	}
	texts = append(texts, logs.String())
	for _, text := range texts {
		if strings.Contains(text, value) || strings.Contains(text, fmt.Sprintf("%x", value)) {
			t.Errorf("the token is in %s", text)
		}
	}
}
