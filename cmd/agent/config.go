package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// Config is every setting of the agent, one field per flag. The table in
// docs/design.md, "Command line", is the contract for names, variables and
// defaults. Commands get a parsed and validated Config; end-to-end tests build
// one directly from DefaultConfig.
type Config struct {
	Repo           string   // --repo: config repository, a URL or a local path
	Branch         string   // --branch: the branch that is deployed
	Ref            string   // --ref: plan this ref instead of the branch head
	Schedule       string   // --schedule: poll schedule, cron syntax
	StateBucket    string   // --state-bucket: inventory bucket; "" derives cloudpipe-state-<account>-<region>
	Cluster        string   // --cluster: ECS cluster
	Region         string   // --region: bootstrap: region whose cluster and network to prepare; "" is the agent's (AWS_REGION)
	Subnets        []string // --subnets: Fargate task subnets; nil means bootstrap's choice
	SecurityGroups []string // --security-groups: Fargate task security groups; nil means bootstrap's choice
	Concurrency    int      // --concurrency: workflows applied at once
	GitHubAPI      string   // --github-api: GitHub (or compatible) API base URL
	GitHubRepo     string   // --github-repo: owner/name for statuses; "" derives it from Repo
	// GitHub App authentication, instead of CLOUDPIPE_GITHUB_TOKEN: all of
	// the App and installation IDs and one source of the App's key.
	GitHubAppID           int    // --github-app-id: the App's ID; 0 is no App
	GitHubInstallationID  int    // --github-installation-id: the App's installation on the repository
	GitHubAppKeyFile      string // --github-app-key-file: the App's private key, a PEM file (local runs)
	GitHubAppKeySecretARN string // --github-app-key-secret-arn: the App's private key, a Secrets Manager secret
	Listen                string // --listen: address of the health, metrics and webhook server
	LogFormat             string // --log-format: "text", "json", or "" for text on a terminal and json otherwise
	LogLevel              string // --log-level: debug, info, warn or error
	JSON                  bool   // --json: machine-readable output (validate)
	Strict                bool   // --strict: validate counts notes as problems
	Once                  bool   // --once: one pass, then exit (sync)
	AgentID               string // --agent-id: this agent's name in inventory leases; "" is the host name
	RunnerImage           string // --runner-image: image of the init container that installs the runner
	CacheDir              string // --cache-dir: where remote repositories are cloned; "" is the user cache dir
	DriftInterval         string // --drift-interval: how often a pass also checks deployed resources still exist
	From                  string // --from: import: the original cloud_pipe's directory (~/.cloud_pipe)
	Out                   string // --out: import: the config repository directory to write
	Yes                   bool   // --yes: teardown: do it, rather than print the plan
	Stage                 int    // --stage: redrive: the one stage to redrive; negative is every stage
	Drift                 bool   // --drift: plan: also check deployed pipelines for drift (reads AWS)
	// --notify-url: chat webhook that notifications are POSTed to; it
	// carries a secret, so it is never printed.
	NotifyURL secret.Value
	// --notify-url-secret-arn: Secrets Manager ARN holding the notify URL.
	NotifyURLSecretARN string
}

// DefaultConfig returns the defaults of docs/design.md's "Command line" table.
// Fields whose default depends on the environment (the AWS account, the
// terminal) are left empty and resolved where that is known.
func DefaultConfig() Config {
	return Config{
		Branch:        "main",
		Schedule:      "@every 1m",
		Cluster:       "cloudpipe",
		Concurrency:   8,
		GitHubAPI:     "https://api.github.com/",
		Listen:        ":8080",
		LogLevel:      "info",
		RunnerImage:   "ghcr.io/cloudpipe/agent:latest",
		DriftInterval: "10m",
		Stage:         -1,
	}
}

// Validate reports every malformed setting at once, joined with errors.Join,
// so a misconfigured deployment is fixed in one round. It checks values, not
// presence: which settings a command requires is declared in its options.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if c.Branch == "" {
		bad("branch", "must not be empty")
	}
	if _, err := cron.ParseStandard(c.Schedule); err != nil {
		bad("schedule", "%q is not a cron schedule: %v", c.Schedule, err)
	}
	if c.StateBucket != "" && !isBucketName(c.StateBucket) {
		bad("state-bucket", "%q is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)", c.StateBucket)
	}
	if c.Cluster == "" {
		bad("cluster", "must not be empty")
	}
	if c.Region != "" && !workflow.IsRegion(c.Region) {
		bad("region", "%q is not an AWS region code such as eu-west-1", c.Region)
	}
	if d, err := time.ParseDuration(c.DriftInterval); err != nil || d < time.Minute {
		bad("drift-interval", "%q is not a duration of at least 1m (e.g. 10m)", c.DriftInterval)
	}
	if c.Concurrency < 1 {
		bad("concurrency", "must be at least 1, got %d", c.Concurrency)
	}
	if u, err := url.Parse(c.GitHubAPI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("github-api", "%q is not an http(s) URL", c.GitHubAPI)
	}
	if c.GitHubRepo != "" {
		owner, name, ok := strings.Cut(c.GitHubRepo, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			bad("github-repo", "%q is not owner/name", c.GitHubRepo)
		}
	}
	c.validateApp(bad)
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port: %v", c.Listen, err)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		bad("log-format", "%q is neither text nor json", c.LogFormat)
	}
	if !c.NotifyURL.IsZero() {
		// Not the value in the message: the URL is a credential.
		if u, err := url.Parse(c.NotifyURL.Reveal()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("notify-url", "not an http(s) URL (value not shown: it holds a secret)")
		}
		if c.NotifyURLSecretARN != "" {
			bad("notify-url-secret-arn", "set either --notify-url or --notify-url-secret-arn, not both")
		}
	}
	if c.NotifyURLSecretARN != "" && !strings.HasPrefix(c.NotifyURLSecretARN, "arn:") {
		bad("notify-url-secret-arn", "%q is not a Secrets Manager ARN", c.NotifyURLSecretARN)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log-level", "%v", err)
	}
	return errors.Join(errs...)
}

// validateApp checks the GitHub App settings: none, or an App ID, an
// installation ID and exactly one source of the key.
func (c Config) validateApp(bad func(flag, format string, args ...any)) {
	if c.GitHubAppID < 0 {
		bad("github-app-id", "must be a positive number, got %d", c.GitHubAppID)
	}
	if c.GitHubInstallationID < 0 {
		bad("github-installation-id", "must be a positive number, got %d", c.GitHubInstallationID)
	}
	if c.GitHubAppKeyFile != "" && c.GitHubAppKeySecretARN != "" {
		bad("github-app-key-file", "and --github-app-key-secret-arn both name the key: pass one")
	}
	if !c.usesApp() {
		return
	}
	if c.GitHubAppID == 0 {
		bad("github-app-id", "is required with --github-installation-id or an app key")
	}
	if c.GitHubInstallationID == 0 {
		bad("github-installation-id", "is required with --github-app-id")
	}
	if c.GitHubAppKeyFile == "" && c.GitHubAppKeySecretARN == "" {
		bad("github-app-key-file", "(or --github-app-key-secret-arn) is required with --github-app-id")
	}
}

// usesApp reports whether any GitHub App setting is given.
func (c Config) usesApp() bool {
	return c.GitHubAppID != 0 || c.GitHubInstallationID != 0 || c.GitHubAppKeyFile != "" || c.GitHubAppKeySecretARN != ""
}

// isBucketName is a coarse check of S3's naming rules; the workflow package
// checks workflow buckets in full, this only catches typos in a flag.
func isBucketName(s string) bool {
	if len(s) < 3 || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not a log level (debug, info, warn, error)", s)
	}
	return l, nil
}

// option describes one Config field as a flag. The environment variable is
// derived from the name (envName), so the two can never drift apart.
type option struct {
	name     string                     // flag name without dashes
	usage    string                     // help text, lowercase, no trailing period
	value    func(c *Config) flag.Value // the field, as a flag.Value writing into c
	defText  string                     // default shown in help when the zero value means "derived"
	required bool                       // a command that reads this option cannot run without it
}

// options are all the agent's flags, in the order help lists them.
var options = []option{
	{name: "repo", usage: "config repository: a Git URL or a local path", required: true,
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Repo) }},
	{name: "branch", usage: "branch whose head is deployed",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Branch) }},
	{name: "ref", usage: "ref to read instead of the branch head", defText: "the branch head",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Ref) }},
	{name: "schedule", usage: "when to poll the repository (cron syntax)",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Schedule) }},
	{name: "state-bucket", usage: "S3 bucket holding the inventory", defText: "cloudpipe-state-<account>-<region>",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.StateBucket) }},
	{name: "cluster", usage: "ECS cluster that runs the tasks",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Cluster) }},
	{name: "region", usage: "region whose cluster and network to prepare (the state bucket stays in the agent's region)", defText: "the agent's region, AWS_REGION",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Region) }},
	{name: "subnets", usage: "comma-separated subnet IDs for Fargate tasks", defText: "chosen by bootstrap",
		value: func(c *Config) flag.Value { return (*listValue)(&c.Subnets) }},
	{name: "security-groups", usage: "comma-separated security group IDs for Fargate tasks", defText: "chosen by bootstrap",
		value: func(c *Config) flag.Value { return (*listValue)(&c.SecurityGroups) }},
	{name: "concurrency", usage: "workflows applied at once",
		value: func(c *Config) flag.Value { return (*intValue)(&c.Concurrency) }},
	{name: "github-api", usage: "GitHub (or compatible) API base URL",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.GitHubAPI) }},
	{name: "github-repo", usage: "owner/name that commit statuses go to", defText: "derived from --repo",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.GitHubRepo) }},
	{name: "github-app-id", usage: "authenticate to GitHub as this GitHub App (with --github-installation-id and a key) instead of a token", defText: "none",
		value: func(c *Config) flag.Value { return (*intValue)(&c.GitHubAppID) }},
	{name: "github-installation-id", usage: "the GitHub App's installation on the repository", defText: "none",
		value: func(c *Config) flag.Value { return (*intValue)(&c.GitHubInstallationID) }},
	{name: "github-app-key-file", usage: "PEM file of the GitHub App's private key (local runs)",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.GitHubAppKeyFile) }},
	{name: "github-app-key-secret-arn", usage: "Secrets Manager secret holding the GitHub App's private key (PEM)",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.GitHubAppKeySecretARN) }},
	{name: "listen", usage: "address of /healthz, /readyz, /metrics and /hooks/github",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Listen) }},
	{name: "log-format", usage: "log format: text or json", defText: "text on a terminal, else json",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.LogFormat) }},
	{name: "log-level", usage: "log level: debug, info, warn or error",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.LogLevel) }},
	{name: "json", usage: "print results as JSON",
		value: func(c *Config) flag.Value { return (*boolValue)(&c.JSON) }},
	{name: "strict", usage: "count notes as problems, so that any note fails",
		value: func(c *Config) flag.Value { return (*boolValue)(&c.Strict) }},
	{name: "once", usage: "run one pass, then exit",
		value: func(c *Config) flag.Value { return (*boolValue)(&c.Once) }},
	{name: "agent-id", usage: "this agent's name in inventory leases (unique per agent sharing a state bucket)", defText: "the host name",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.AgentID) }},
	{name: "runner-image", usage: "image of the task's init container that installs the runner (this agent's image)",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.RunnerImage) }},
	{name: "drift-interval", usage: "how often a pass also re-creates resources deleted outside cloudpipe",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.DriftInterval) }},
	{name: "cache-dir", usage: "where clones of remote repositories are kept", defText: "the user cache directory",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.CacheDir) }},
	{name: "from", usage: "the original cloud_pipe's directory to import, usually ~/.cloud_pipe",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.From) }},
	{name: "out", usage: "directory to write the config repository into (created if missing; no file in it is overwritten)",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.Out) }},
	{name: "drift", usage: "also compare deployed pipelines with AWS and show what was changed or deleted outside cloudpipe",
		value: func(c *Config) flag.Value { return (*boolValue)(&c.Drift) }},
	{name: "notify-url", usage: "chat webhook (Slack incoming webhook) notified of applies, failures, teardowns, drift and run failures; a secret: prefer the variable", defText: "none",
		value: func(c *Config) flag.Value { return (*secretFlag)(&c.NotifyURL) }},
	{name: "notify-url-secret-arn", usage: "Secrets Manager ARN (cloudpipe/*) holding the notify URL, instead of --notify-url", defText: "none",
		value: func(c *Config) flag.Value { return (*stringValue)(&c.NotifyURLSecretARN) }},
	{name: "yes", usage: "tear the pipelines down; without it only the plan is printed",
		value: func(c *Config) flag.Value { return (*boolValue)(&c.Yes) }},
	{name: "stage", usage: "the stage (0, 1, ...) whose dead letters to redrive", defText: "every stage",
		value: func(c *Config) flag.Value { return (*intValue)(&c.Stage) }},
}

// envName is the environment variable of a flag: --state-bucket reads
// CLOUDPIPE_STATE_BUCKET, except where envExceptions says otherwise.
func envName(flagName string) string {
	if env, ok := envExceptions[flagName]; ok {
		return env
	}
	return "CLOUDPIPE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envExceptions are the flags whose derived variable names something else
// already: CLOUDPIPE_STAGE is the stage number the runner and the stage
// function read (contract.EnvStage), set in every task, so redrive's
// --stage must not pick it up from a shell or container that has it.
var envExceptions = map[string]string{
	"stage": "CLOUDPIPE_REDRIVE_STAGE",
}

func findOption(name string) *option {
	for i := range options {
		if options[i].name == name {
			return &options[i]
		}
	}
	return nil
}

// parseFlags builds the Config for command c from its command line and the
// environment: a flag beats its environment variable, which beats the
// default. Only the options c declares are read, so a variable meant for
// another command cannot change this one. Flags and positional arguments may
// be interleaved ("validate . --json"); after "--" everything is positional.
// The returned Config has been validated. The error wraps flag.ErrHelp when
// help was asked for; any other error is a usage error.
func parseFlags(c *command, args []string, getenv func(string) string) (Config, []string, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("agent "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller prints errors and help its own way
	for _, name := range c.flags {
		o := findOption(name)
		if o == nil {
			panic(fmt.Sprintf("command %s declares unknown option %q", c.name, name))
		}
		fs.Var(o.value(&cfg), o.name, o.usage)
	}

	// Environment first, so that the command line overwrites it.
	var errs []error
	for _, name := range c.flags {
		env := envName(name)
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	}

	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return Config{}, nil, err // help works even with a broken environment
			}
			return Config{}, nil, errors.Join(append(errs, err)...)
		}
		consumed := len(rest) - fs.NArg()
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed > 0 && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		// The flag package stops at the first positional argument; take it and
		// go on so that flags may also follow it.
		pos = append(pos, rest[0])
		rest = rest[1:]
	}

	for _, name := range c.flags {
		o := findOption(name)
		if o.required && reflect.ValueOf(o.value(&cfg)).Elem().IsZero() {
			errs = append(errs, fmt.Errorf("--%s (or %s) is required", name, envName(name)))
		}
	}
	if err := errors.Join(append(errs, cfg.Validate())...); err != nil {
		return Config{}, nil, err
	}
	return cfg, pos, nil
}

// printFlags writes the help of the named options: flag, value type, usage,
// environment variable and default.
func printFlags(w io.Writer, names []string) {
	def := DefaultConfig()
	for _, name := range names {
		o := findOption(name)
		v := o.value(&def)
		typ := ""
		if _, isBool := v.(*boolValue); !isBool {
			typ = " " + valueType(v)
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s (env %s", o.name, typ, o.usage, envName(o.name))
		switch d := v.String(); {
		case o.defText != "":
			fmt.Fprintf(w, ", default %s", o.defText)
		case o.required:
			fmt.Fprint(w, ", required")
		case d != "" && d != "false":
			fmt.Fprintf(w, ", default %q", d)
		}
		fmt.Fprint(w, ")\n")
	}
}

func valueType(v flag.Value) string {
	switch v.(type) {
	case *intValue:
		return "int"
	case *listValue:
		return "list"
	default:
		return "string"
	}
}

// The flag.Value types below write straight into Config fields. They exist
// (rather than fs.StringVar and friends) so that one option table can both
// register a flag and, through reflection in tests, be checked against Config.

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string     { return string(*s) }

type intValue int

func (i *intValue) Set(v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	*i = intValue(n)
	return nil
}
func (i *intValue) String() string { return strconv.Itoa(int(*i)) }

type boolValue bool

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not a boolean", v)
	}
	*b = boolValue(x)
	return nil
}
func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

// listValue is a comma-separated list. Each Set replaces the list rather than
// appending, so a flag replaces its environment variable instead of adding to it.
type listValue []string

func (l *listValue) Set(v string) error {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*l = out
	return nil
}
func (l *listValue) String() string { return strings.Join(*l, ",") }

// secretFlag is a flag holding a secret: String never shows it (help,
// errors and logs print "[redacted]" or nothing).
type secretFlag secret.Value

func (s *secretFlag) Set(v string) error {
	*s = secretFlag(secret.New(strings.TrimSpace(v)))
	return nil
}
func (s *secretFlag) String() string {
	if secret.Value(*s).IsZero() {
		return ""
	}
	return secret.Redacted
}
