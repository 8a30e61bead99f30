package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/secret"
)

const value = "s3cr3t-value"

func TestReveal(t *testing.T) {
	s := secret.New(value)
	if s.Reveal() != value || s.IsZero() {
		t.Errorf("New(%q): Reveal = %q, IsZero = %v", value, s.Reveal(), s.IsZero())
	}
	var zero secret.Value
	if !zero.IsZero() || !secret.New("").IsZero() || zero.Reveal() != "" {
		t.Error("the zero Value or New(\"\") is not the empty secret")
	}
}

// options stands for a struct that carries a secret, as status.Options does.
type options struct {
	Repo  string
	Token secret.Value
	Ptr   *secret.Value
}

func TestNeverShown(t *testing.T) {
	s := secret.New(value)
	opts := options{Repo: "o/r", Token: s, Ptr: &s}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("options", "token", s, "options", opts)
	}
	js, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	text, err := s.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{
		"slog":        logs.String(),
		"json":        string(js),
		"MarshalText": string(text),
		"error":       fmt.Errorf("call failed with token %v: %w", s, fmt.Errorf("token %s", &s)).Error(),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-8v"} {
		shown[verb] = fmt.Sprintf(verb, s)
		shown[verb+" of a pointer"] = fmt.Sprintf(verb, &s)
		shown[verb+" of a struct"] = fmt.Sprintf(verb, opts)
	}
	hexValue := fmt.Sprintf("%x", value)
	for where, text := range shown {
		if strings.Contains(text, value) || strings.Contains(strings.ToLower(text), hexValue) {
			t.Errorf("%s shows the secret: %s", where, text)
		}
	}
	for _, where := range []string{"slog", "json", "MarshalText", "error", "%v", "%s of a struct", "%#v"} {
		if !strings.Contains(shown[where], "[redacted]") {
			t.Errorf("%s does not say [redacted]: %s", where, shown[where])
		}
	}
	if !strings.Contains(string(js), `"Token":"[redacted]"`) {
		t.Errorf("JSON %s does not encode the token as \"[redacted]\"", js)
	}
}
