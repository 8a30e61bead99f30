package status_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/status"
)

func TestSecretIsNeverPrinted(t *testing.T) {
	const value = "s3cr3t-value"
	s := status.NewSecret(value)
	if s.Reveal() != value || s.IsZero() || !status.NewSecret("").IsZero() {
		t.Fatal("Reveal or IsZero is wrong")
	}
	opts := status.Options{Repo: "o/r", Token: s}

	var texts []string
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		texts = append(texts, fmt.Sprintf(format, s), fmt.Sprintf(format, opts))
	}
	js, err := json.Marshal(struct{ Token status.Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	texts = append(texts, string(js))
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("options", "token", s, "options", opts)
	}
	texts = append(texts, logs.String())

	for _, text := range texts {
		if strings.Contains(text, value) || strings.Contains(text, fmt.Sprintf("%x", value)) {
			t.Errorf("the secret is in %s", text)
		}
	}
	if !strings.Contains(string(js), `"Token":"[redacted]"`) || !strings.Contains(fmt.Sprint(s), "[redacted]") {
		t.Errorf("JSON %s or String %s does not say [redacted]", js, s)
	}
}
