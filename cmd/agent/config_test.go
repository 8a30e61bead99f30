package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// allFlags is a command that reads every option, so parsing can be tested
// independently of which commands exist yet.
func allFlags() *command {
	c := &command{name: "test"}
	for _, o := range options {
		c.flags = append(c.flags, o.name)
	}
	return c
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseFlags(t *testing.T) {
	base := func(edit func(c *Config)) Config {
		c := DefaultConfig()
		c.Repo = "https://github.com/o/r.git" // required by allFlags
		if edit != nil {
			edit(&c)
		}
		return c
	}
	repo := "--repo=https://github.com/o/r.git"
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantPos []string
		wantErr string // substring; "" means no error
	}{
		{name: "defaults", args: []string{repo}, want: base(nil)},
		{name: "env over default",
			args: []string{repo},
			env:  map[string]string{"CLOUDPIPE_STATE_BUCKET": "my-state", "CLOUDPIPE_CONCURRENCY": "3"},
			want: base(func(c *Config) { c.StateBucket = "my-state"; c.Concurrency = 3 })},
		{name: "flag over env",
			args: []string{repo, "--cluster", "flag", "--concurrency=2"},
			env:  map[string]string{"CLOUDPIPE_CLUSTER": "env", "CLOUDPIPE_CONCURRENCY": "5"},
			want: base(func(c *Config) { c.Cluster = "flag"; c.Concurrency = 2 })},
		{name: "required from env",
			env:  map[string]string{"CLOUDPIPE_REPO": "/srv/config"},
			want: base(func(c *Config) { c.Repo = "/srv/config" })},
		{name: "comma lists",
			args: []string{repo, "--subnets", "subnet-a, subnet-b,,", "--security-groups=sg-1"},
			want: base(func(c *Config) { c.Subnets = []string{"subnet-a", "subnet-b"}; c.SecurityGroups = []string{"sg-1"} })},
		{name: "flag list replaces env list",
			args: []string{repo, "--subnets=subnet-flag"},
			env:  map[string]string{"CLOUDPIPE_SUBNETS": "subnet-env1,subnet-env2"},
			want: base(func(c *Config) { c.Subnets = []string{"subnet-flag"} })},
		{name: "bool flag and env",
			args: []string{repo},
			env:  map[string]string{"CLOUDPIPE_JSON": "true"},
			want: base(func(c *Config) { c.JSON = true })},
		{name: "bool flag beats env",
			args: []string{repo, "--json=false"},
			env:  map[string]string{"CLOUDPIPE_JSON": "1"},
			want: base(nil)},
		{name: "interleaved positionals",
			args:    []string{"a", repo, "b", "--json", "c"},
			want:    base(func(c *Config) { c.JSON = true }),
			wantPos: []string{"a", "b", "c"}},
		{name: "double dash ends flags",
			args:    []string{repo, "--", "--json", "-x"},
			want:    base(nil),
			wantPos: []string{"--json", "-x"}},
		{name: "single dash accepted",
			args: []string{"-repo", "r", "-branch", "dev"},
			want: base(func(c *Config) { c.Repo = "r"; c.Branch = "dev" })},
		{name: "bad int flag", args: []string{repo, "--concurrency=many"}, wantErr: `"many" is not an integer`},
		{name: "bad int env", args: []string{repo}, env: map[string]string{"CLOUDPIPE_CONCURRENCY": "x"},
			wantErr: `CLOUDPIPE_CONCURRENCY="x"`},
		{name: "bad bool env", args: []string{repo}, env: map[string]string{"CLOUDPIPE_JSON": "yes please"},
			wantErr: `CLOUDPIPE_JSON`},
		{name: "unknown flag", args: []string{repo, "--colour"}, wantErr: "flag provided but not defined: -colour"},
		{name: "missing value", args: []string{repo, "--branch"}, wantErr: "flag needs an argument"},
		{name: "required missing", args: nil, wantErr: "--repo (or CLOUDPIPE_REPO) is required"},
		{name: "invalid value", args: []string{repo, "--concurrency=0"}, wantErr: "--concurrency: must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pos, err := parseFlags(allFlags(), tt.args, envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags(%q, env %v) error = %v, want one containing %q", tt.args, tt.env, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q, env %v): %v", tt.args, tt.env, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseFlags(%q, env %v)\n got %+v\nwant %+v", tt.args, tt.env, got, tt.want)
			}
			if !slices.Equal(pos, tt.wantPos) {
				t.Errorf("parseFlags(%q) positional = %q, want %q", tt.args, pos, tt.wantPos)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		// Help must work even when the environment is broken, so the user can
		// find out what the variables mean.
		_, _, err := parseFlags(allFlags(), []string{arg}, envOf(map[string]string{"CLOUDPIPE_CONCURRENCY": "x"}))
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseFlags(%q) error = %v, want flag.ErrHelp", arg, err)
		}
	}
}

// TestParseFlagsOnlyDeclared checks that a command ignores the variables of
// flags it does not declare, so one environment can serve every command.
func TestParseFlagsOnlyDeclared(t *testing.T) {
	c := &command{name: "narrow", flags: []string{"json"}}
	got, _, err := parseFlags(c, nil, envOf(map[string]string{"CLOUDPIPE_CONCURRENCY": "x", "CLOUDPIPE_CLUSTER": "other"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want defaults %+v", got, want)
	}
	if _, _, err := parseFlags(c, []string{"--cluster=x"}, envOf(nil)); err == nil {
		t.Error("an undeclared flag was accepted")
	}
}

// TestOptionsCoverConfig holds the configuration contract of docs/design.md
// ("Command line", "Code style"): every Config field has exactly one flag, and
// every flag of the "Command line" table exists.
func TestOptionsCoverConfig(t *testing.T) {
	var cfg Config
	fields := reflect.ValueOf(&cfg).Elem()
	bound := map[string]string{} // field name -> flag
	for _, o := range options {
		addr := reflect.ValueOf(o.value(&cfg)).Pointer()
		found := false
		for i := range fields.NumField() {
			if fields.Field(i).Addr().Pointer() == addr {
				f := fields.Type().Field(i).Name
				if prev, dup := bound[f]; dup {
					t.Errorf("Config.%s is bound by --%s and --%s", f, prev, o.name)
				}
				bound[f] = o.name
				found = true
			}
		}
		if !found {
			t.Errorf("--%s writes to no Config field", o.name)
		}
	}
	for i := range fields.NumField() {
		if f := fields.Type().Field(i).Name; bound[f] == "" {
			t.Errorf("Config.%s has no flag", f)
		}
	}
	for _, name := range []string{"repo", "branch", "schedule", "drift-interval", "state-bucket", "cluster",
		"subnets", "security-groups", "concurrency", "github-api", "github-repo", "listen", "agent-id",
		"runner-image", "log-format", "log-level"} {
		if findOption(name) == nil {
			t.Errorf("--%s of docs/design.md's Command line table is missing", name)
		}
	}
	if got, want := envName("state-bucket"), "CLOUDPIPE_STATE_BUCKET"; got != want {
		t.Errorf("envName(state-bucket) = %s, want %s", got, want)
	}
	// No flag reads a variable of the runner's or the stage function's.
	for _, o := range options {
		for _, env := range []string{contract.EnvStage, contract.EnvWorkflow} {
			if envName(o.name) == env {
				t.Errorf("--%s reads %s, the stage's own variable", o.name, env)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
		want []string // one substring per expected problem
	}{
		{"empty branch", func(c *Config) { c.Branch = "" }, []string{"--branch"}},
		{"bad schedule", func(c *Config) { c.Schedule = "every minute" }, []string{"--schedule"}},
		{"cron schedule", func(c *Config) { c.Schedule = "*/5 * * * *" }, nil},
		{"bad bucket", func(c *Config) { c.StateBucket = "My_Bucket" }, []string{"--state-bucket"}},
		{"empty cluster", func(c *Config) { c.Cluster = "" }, []string{"--cluster"}},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, []string{"--concurrency"}},
		{"relative api", func(c *Config) { c.GitHubAPI = "api.github.com" }, []string{"--github-api"}},
		{"gitea api", func(c *Config) { c.GitHubAPI = "http://127.0.0.1:3000/api/v1/" }, nil},
		{"bad repo name", func(c *Config) { c.GitHubRepo = "just-a-name" }, []string{"--github-repo"}},
		{"bad listen", func(c *Config) { c.Listen = "8080" }, []string{"--listen"}},
		{"bad format", func(c *Config) { c.LogFormat = "xml" }, []string{"--log-format"}},
		{"bad level", func(c *Config) { c.LogLevel = "loud" }, []string{"--log-level"}},
		{"github app", func(c *Config) {
			c.GitHubAppID, c.GitHubInstallationID, c.GitHubAppKeySecretARN = 1, 2, "arn:aws:secretsmanager:us-east-1:1:secret:k"
		}, nil},
		{"github app without installation or key", func(c *Config) { c.GitHubAppID = 1 },
			[]string{"--github-installation-id", "--github-app-key-file"}},
		{"github app key without app", func(c *Config) { c.GitHubAppKeyFile = "k.pem" },
			[]string{"--github-app-id", "--github-installation-id"}},
		{"github app key twice", func(c *Config) {
			c.GitHubAppID, c.GitHubInstallationID, c.GitHubAppKeyFile, c.GitHubAppKeySecretARN = 1, 2, "k.pem", "arn"
		}, []string{"--github-app-key-secret-arn"}},
		{"negative app id", func(c *Config) {
			c.GitHubAppID, c.GitHubInstallationID, c.GitHubAppKeyFile = -1, 2, "k.pem"
		}, []string{"--github-app-id"}},
		{"every problem at once", func(c *Config) { c.Concurrency = -1; c.LogFormat = "xml"; c.Cluster = "" },
			[]string{"--concurrency", "--log-format", "--cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tt.want) {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", got, len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want a problem about %s", err, w)
				}
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	t.Run("json when not a terminal", func(t *testing.T) {
		var buf bytes.Buffer
		newLogger(&buf, "", "info").Info("stage created", "workflow", "w")
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("output %q is not JSON: %v", buf.String(), err)
		}
		if rec["msg"] != "stage created" || rec["workflow"] != "w" {
			t.Errorf("record = %v", rec)
		}
	})
	t.Run("text without color", func(t *testing.T) {
		var buf bytes.Buffer
		newLogger(&buf, "text", "debug").Debug("retry", "attempt", 2)
		out := buf.String()
		if !strings.Contains(out, "retry") || !strings.Contains(out, "attempt=2") || strings.Contains(out, "\x1b[") {
			t.Errorf("text output = %q, want plain text with the message and attribute", out)
		}
	})
	t.Run("level filters", func(t *testing.T) {
		var buf bytes.Buffer
		log := newLogger(&buf, "json", "warn")
		log.Info("hidden")
		if buf.Len() != 0 {
			t.Errorf("info logged at level warn: %q", buf.String())
		}
	})
}

// FuzzParseFlags checks that no command line or environment makes parsing
// panic, and that success always yields a valid Config.
func FuzzParseFlags(f *testing.F) {
	f.Add("--repo=r\x00--subnets\x00a,b\x00x", "3")
	f.Add("--\x00-h", "")
	f.Add("--concurrency\x00", "-1")
	f.Fuzz(func(t *testing.T, args, concurrency string) {
		env := map[string]string{"CLOUDPIPE_CONCURRENCY": concurrency}
		cfg, _, err := parseFlags(allFlags(), strings.Split(args, "\x00"), envOf(env))
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("parseFlags accepted an invalid config: %v", verr)
			}
		}
	})
}

// TestNotifyURLNeverPrinted: the notify URL is a credential; a bad one is
// refused without being echoed, and a good one prints as [redacted] however
// the Config is printed.
func TestNotifyURLNeverPrinted(t *testing.T) {
	const secretPart = "T0/B0/s3cr3tw3bh00k"
	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"bad scheme", []string{"--notify-url", "ftp://hooks.example/" + secretPart}, nil, "--notify-url: not an http(s) URL"},
		{"bad from env", nil, map[string]string{"CLOUDPIPE_NOTIFY_URL": "hooks.example/" + secretPart}, "--notify-url: not an http(s) URL"},
		{"both", []string{"--notify-url", "https://hooks.example/" + secretPart, "--notify-url-secret-arn", "arn:aws:secretsmanager:us-east-1:1:secret:cloudpipe/n"}, nil, "not both"},
		{"good", []string{"--notify-url", "https://hooks.example/" + secretPart}, nil, ""},
	} {
		cfg, _, err := parseFlags(allFlags(), append([]string{"--repo", "."}, tt.args...), envOf(tt.env))
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr == "" && cfg.NotifyURL.Reveal() != "https://hooks.example/"+secretPart:
			t.Errorf("%s: NotifyURL = %q", tt.name, cfg.NotifyURL.Reveal())
		}
		for _, printed := range []string{fmt.Sprint(err), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
			if strings.Contains(printed, secretPart) {
				t.Errorf("%s: the URL is printed: %s", tt.name, printed)
			}
		}
	}
}
