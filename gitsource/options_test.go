package gitsource_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
)

func TestOptionsValidate(t *testing.T) {
	source := func(context.Context) (secret.Value, error) { return secret.New("t"), nil }
	tests := []struct {
		name string
		in   gitsource.Options
		want []error // every problem, reported at once
	}{
		{"local path", gitsource.Options{URL: "/srv/config"}, nil},
		{"https", gitsource.Options{URL: "https://github.com/o/r.git", CacheDir: "/c"}, nil},
		{"https with token", gitsource.Options{URL: "https://github.com/o/r.git", CacheDir: "/c", Token: secret.New("t")}, nil},
		{"ssh url", gitsource.Options{URL: "ssh://git@github.com/o/r.git", CacheDir: "/c", SSHKeyPath: "/k"}, nil},
		{"scp-like", gitsource.Options{URL: "git@github.com:r.git", CacheDir: "/c", SSHKeyPath: "/k"}, nil},
		{"file url", gitsource.Options{URL: "file:///srv/config"}, nil},
		{"missing url", gitsource.Options{}, []error{gitsource.ErrMissingURL}},
		{"remote without cache", gitsource.Options{URL: "https://h/r.git"}, []error{gitsource.ErrMissingCacheDir}},
		{"scp-like without cache", gitsource.Options{URL: "git@h:r.git"}, []error{gitsource.ErrMissingCacheDir}},
		{"bad branch", gitsource.Options{URL: "/r", Branch: "a..b"}, []error{gitsource.ErrInvalidBranch}},
		{"negative timeout", gitsource.Options{URL: "/r", Timeout: -time.Second}, []error{gitsource.ErrInvalidTimeout}},
		{"token over ssh", gitsource.Options{URL: "git@h:r.git", CacheDir: "/c", Token: secret.New("t")}, []error{gitsource.ErrInvalidAuth}},
		{"token for a local path", gitsource.Options{URL: "/r", Token: secret.New("t")}, []error{gitsource.ErrInvalidAuth}},
		{"https with token source", gitsource.Options{URL: "https://github.com/o/r.git", CacheDir: "/c", TokenSource: source}, nil},
		{"http with token source", gitsource.Options{URL: "http://127.0.0.1:3000/o/r.git", CacheDir: "/c", TokenSource: source}, nil},
		{"token and token source", gitsource.Options{URL: "https://h/r.git", CacheDir: "/c", Token: secret.New("t"), TokenSource: source},
			[]error{gitsource.ErrInvalidAuth}},
		{"token source over ssh", gitsource.Options{URL: "ssh://git@h/r.git", CacheDir: "/c", TokenSource: source}, []error{gitsource.ErrInvalidAuth}},
		{"token source over scp-like ssh", gitsource.Options{URL: "git@h:r.git", CacheDir: "/c", TokenSource: source}, []error{gitsource.ErrInvalidAuth}},
		{"token source over git://", gitsource.Options{URL: "git://h/r.git", CacheDir: "/c", TokenSource: source}, []error{gitsource.ErrInvalidAuth}},
		{"token source for a local path", gitsource.Options{URL: "/r", TokenSource: source}, []error{gitsource.ErrInvalidAuth}},
		{"token source for a file url", gitsource.Options{URL: "file:///r", TokenSource: source}, []error{gitsource.ErrInvalidAuth}},
		{"token, token source and ssh", gitsource.Options{URL: "git@h:r.git", CacheDir: "/c", Token: secret.New("t"), TokenSource: source},
			[]error{gitsource.ErrInvalidAuth}},
		{"ssh key over https", gitsource.Options{URL: "https://h/r.git", CacheDir: "/c", SSHKeyPath: "/k"}, []error{gitsource.ErrInvalidAuth}},
		{"unsupported scheme", gitsource.Options{URL: "ftp://h/r.git", CacheDir: "/c"}, []error{gitsource.ErrInvalidURL}},
		{"no host", gitsource.Options{URL: "https:///r.git", CacheDir: "/c"}, []error{gitsource.ErrInvalidURL}},
		{"several", gitsource.Options{URL: "https://h/r.git", Branch: "-x y", Timeout: -1},
			[]error{gitsource.ErrMissingCacheDir, gitsource.ErrInvalidBranch, gitsource.ErrInvalidTimeout}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.in
			err := o.Validate()
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("Validate(%+v) = %v; want nil", tt.in, err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Validate(%+v) = %v; want it to match %q", tt.in, err, w)
				}
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := gitsource.Options{URL: "https://h/r.git", CacheDir: "/c", Token: secret.New("t")}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Branch != "main" || o.Timeout != 30*time.Second || o.Username != "x-access-token" {
		t.Fatalf("defaults: branch %q, timeout %s, username %q", o.Branch, o.Timeout, o.Username)
	}
	o = gitsource.Options{URL: "https://h/r.git", CacheDir: "/c", TokenSource: func(context.Context) (secret.Value, error) { return secret.Value{}, nil }}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Username != "x-access-token" {
		t.Fatalf("username with a token source: %q", o.Username)
	}
	o = gitsource.Options{URL: "https://h/r.git", CacheDir: "/c"}
	if err := o.Validate(); err != nil || o.Username != "" {
		t.Fatalf("username without a token: %q, %v", o.Username, err)
	}
	o = gitsource.Options{URL: "https://h/r.git", CacheDir: "/c", Token: secret.New("t"), Username: "bot", Branch: "prod", Timeout: time.Second}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Branch != "prod" || o.Timeout != time.Second || o.Username != "bot" {
		t.Fatalf("explicit values changed: %+v", o)
	}
}

func TestInvalidURLHidesCredentials(t *testing.T) {
	o := gitsource.Options{URL: "https://bot:hunter2@h/r%zz.git", CacheDir: "/c"}
	err := o.Validate()
	if !errors.Is(err, gitsource.ErrInvalidURL) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Validate = %v; want ErrInvalidURL without the password", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const token = "ghp_s3cr3t"
	o := gitsource.Options{URL: "https://bot:pa55word@github.com/o/r.git", CacheDir: "/c", Token: secret.New(token)}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("opening", "options", o, "token", o.Token)
	js, err := json.Marshal(struct{ Token secret.Value }{o.Token})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(o.Token), fmt.Sprintf("%v %s %q %#v %+v", o.Token, o.Token, o.Token, o.Token, o.Token),
		fmt.Sprintf("%+v %#v", struct{ T secret.Value }{o.Token}, struct{ T secret.Value }{o.Token}),
		string(js), logged.String(),
	} {
		if strings.Contains(out, token) || strings.Contains(out, "pa55word") {
			t.Errorf("credential printed: %s", out)
		}
	}
	if !strings.Contains(logged.String(), "github.com/o/r.git") {
		t.Errorf("log lost the (redacted) URL: %s", logged.String())
	}
	if o.Token.Reveal() != token {
		t.Errorf("Reveal = %q", o.Token.Reveal())
	}
}

// The errors of a token source in the wrong place say which options clash.
func TestTokenSourceErrorsNameOptions(t *testing.T) {
	source := func(context.Context) (secret.Value, error) { return secret.New("t"), nil }
	for _, tc := range []struct {
		o    gitsource.Options
		want []string
	}{
		{gitsource.Options{URL: "https://h/r.git", CacheDir: "/c", Token: secret.New("t"), TokenSource: source}, []string{"Token and TokenSource"}},
		{gitsource.Options{URL: "git@h:r.git", CacheDir: "/c", TokenSource: source}, []string{"TokenSource", "http(s)", "git@h:r.git"}},
	} {
		err := tc.o.Validate()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%s) = %v; want it to say %q", tc.o.URL, err, w)
			}
		}
	}
}
