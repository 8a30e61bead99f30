package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/metrics"
	"github.com/cloudpipe/cloudpipe/notify"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
	"github.com/cloudpipe/cloudpipe/webhook"
)

var runCommand = &command{
	name:     "run",
	synopsis: "--repo R [flags]",
	summary:  "run the agent: poll, webhook, reconcile, statuses",
	help: `Run the agent as a daemon. It does one pass at start, then one on every
--schedule tick and on every verified push to the tracked branch received at
/hooks/github. A pass whose branch has not moved costs one ref listing and no
AWS call; every --drift-interval a pass also re-creates resources deleted
behind the agent's back and resets settings changed outside cloudpipe. Open
pull requests are validated and planned (never applied) and get a
cloudpipe/plan status and the full plan as one comment, edited as the pull
request moves; applied workflows get cloudpipe/<workflow> on the commit that
deployed them.

Secrets come from the environment (the notify URL alone may be a flag):
  CLOUDPIPE_GITHUB_TOKEN, or CLOUDPIPE_GITHUB_TOKEN_SECRET (a Secrets Manager
  ARN): statuses, plan comments and HTTPS Git access; without one (and
  without a GitHub App), statuses are skipped.
  CLOUDPIPE_WEBHOOK_SECRET, or CLOUDPIPE_WEBHOOK_SECRET_ARN: without one,
  /hooks/github is off.
The chat webhook of --notify-url (or --notify-url-secret-arn) is a secret too:
prefer CLOUDPIPE_NOTIFY_URL or the ARN to the flag, which shows in ps. It is
POSTed a JSON message on every apply, failure, teardown, drift repair and,
at most once per workflow per 5 minutes, run failures; a slow or down
receiver never holds up a pass.
A GitHub App instead of a token: --github-app-id, --github-installation-id
and the App's private key from --github-app-key-secret-arn (or, for local
runs, --github-app-key-file); installation tokens are renewed before they
expire and also clone an https:// --repo, which may then be private (the
App needs Contents: read). An App and a token exclude each other.

--listen serves /healthz, /readyz, /metrics and /hooks/github. SIGTERM stops the agent
after the workflows being applied finish and the inventory is saved.`,
	flags: []string{"repo", "branch", "schedule", "drift-interval", "state-bucket", "cluster", "subnets",
		"security-groups", "concurrency", "github-api", "github-repo", "github-app-id", "github-installation-id",
		"github-app-key-file", "github-app-key-secret-arn", "listen", "agent-id",
		"runner-image", "cache-dir", "notify-url", "notify-url-secret-arn", "log-format", "log-level"},
	run: runRun,
}

func runRun(ctx context.Context, cfg Config, _ []string, out streams) error {
	log := newLogger(out.stderr, cfg.LogFormat, cfg.LogLevel)
	exe, err := findAgentExecutable()
	if err != nil {
		return err
	}
	sess, err := loadAWS(ctx, cfg)
	if err != nil {
		return err
	}
	m := metrics.New()
	sess.cfg.APIOptions = append(sess.cfg.APIOptions, m.AWSMiddleware)
	sec, err := readSecrets(ctx, sess.cfg)
	if err != nil {
		return err
	}
	notifier, err := newNotifier(ctx, cfg, sess.cfg, m, log)
	if err != nil {
		return err
	}
	defer closeNotifier(ctx, notifier, log)
	app, err := readApp(ctx, cfg, sess.cfg, sec.token)
	if err != nil {
		return err
	}
	loop, err := newDaemon(ctx, cfg, sess, exe, sec.token, app, m, log, notifier)
	if err != nil {
		return err
	}
	srv, err := newServer(cfg, loop, m, sec.webhook, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("agent started", "repo", redactURL(cfg.Repo), "branch", cfg.Branch, "listen", ln.Addr().String(),
		"schedule", cfg.Schedule, "webhook", !sec.webhook.IsZero(), "statuses", !sec.token.IsZero() || app != nil,
		"github_app", app != nil, "notifications", notifier != nil)
	return serve(ctx, loop, srv, ln, log)
}

// runSecrets are the credentials of `agent run`; either may be empty.
type runSecrets struct {
	token   secret.Value // GitHub token: statuses and HTTPS Git access
	webhook secret.Value // webhook secret: /hooks/github
}

// readSecrets reads the GitHub token and the webhook secret from the
// environment or Secrets Manager (see envSecrets).
func readSecrets(ctx context.Context, awsCfg aws.Config) (runSecrets, error) {
	sec := secretsFrom(awsCfg)
	token, err := sec.read(ctx, "CLOUDPIPE_GITHUB_TOKEN")
	if err != nil {
		return runSecrets{}, err
	}
	hook, err := sec.read(ctx, "CLOUDPIPE_WEBHOOK_SECRET")
	if err != nil {
		return runSecrets{}, err
	}
	return runSecrets{token: token, webhook: hook}, nil
}

// newDaemon opens the repository and wires the reconcile loop: the
// provisioner with the agent's own code, its release, and the status sink.
func newDaemon(ctx context.Context, cfg Config, sess *awsSession, exe agentExecutable, token secret.Value, app *status.App,
	m *metrics.Metrics, log *slog.Logger, notifier *notify.Notifier) (*pipesync.Loop, error) {
	sink, err := newStatusSink(cfg, token, app, log)
	if err != nil {
		return nil, err
	}
	repo, err := openRepoWithAuth(ctx, cfg, sink.git)
	if err != nil {
		return nil, err
	}
	prov, err := sess.provisioner(ctx, cfg, log, exe)
	if err != nil {
		return nil, err
	}
	// An instance type missing from cloudpipe's table is asked of EC2.
	repo.UseInstanceTypes(prov)
	drift, _ := time.ParseDuration(cfg.DriftInterval) // checked by Config.Validate
	var notifications pipesync.Notifier               // a nil *notify.Notifier must stay a nil interface
	if notifier != nil {
		notifications = notifier
	}
	return pipesync.NewDaemon(pipesync.DaemonOptions{Reconciler: pipesync.Options{
		Provisioner: prov,
		Inventory:   newInventory(sess),
		AgentID:     cfg.AgentID,
		Release:     exe.release(cfg),
		Concurrency: cfg.Concurrency,
		Logger:      log,
	}, Loop: pipesync.LoopOptions{
		Repo: repo, Statuses: sink.statuses, PRs: sink.prs, Comments: sink.comments,
		Schedule: cfg.Schedule, DriftEvery: drift, Logger: log, Observer: m, Notifier: notifications,
		OnPass: func(res pipesync.PassResult) { releaseCode(prov, res) },
	}})
}

// releaseCode runs after every pass. The zipped binary, if the pass built
// it, is needed again only by a later pass that must store a new release or
// update a function of another region than the state bucket's, so it is
// dropped.
func releaseCode(prov *provision.Provisioner, res pipesync.PassResult) {
	prov.ReleaseCode()
	// A pass that changed things built requests, and maybe the zip and
	// the inline code of other regions' functions: hand that memory back
	// to the OS now instead of holding it while idle until the next change.
	if res.Report != nil && res.Report.Plan.HasWrites() {
		debug.FreeOSMemory()
	}
}

// statusSink is where the agent reports: commit statuses, the pull
// requests it plans, and their plan comments; and, since the same GitHub
// identity reads the config repository, how Git authenticates.
type statusSink struct {
	statuses pipesync.StatusPoster
	prs      pipesync.PullRequestLister // nil: pull requests are not planned
	comments pipesync.PlanCommenter
	git      gitAuth
}

// newStatusSink returns where commit statuses and plan comments go and
// which pull requests are planned: GitHub with a token or an App; without
// either, statuses are logged and dropped and pull requests are not
// planned. Git over HTTP(S) authenticates with the same token, or with the
// App's installation tokens, renewed as for the API calls.
func newStatusSink(cfg Config, token secret.Value, app *status.App, log *slog.Logger) (statusSink, error) {
	if token.IsZero() && app == nil {
		d := &status.Discard{Logger: log}
		return statusSink{statuses: d, comments: d}, nil
	}
	ghRepo := cfg.GitHubRepo
	if ghRepo == "" {
		var err error
		if ghRepo, err = repoFromURL(cfg.Repo); err != nil {
			return statusSink{}, usagef("--github-repo: %v", err)
		}
	}
	gh, err := status.New(status.Options{APIURL: cfg.GitHubAPI, Repo: ghRepo, Token: token, App: app,
		Logger: log.With("component", "status")})
	if errors.Is(err, status.ErrBadAppKey) {
		return statusSink{}, fmt.Errorf("%s: %w", appKeyFlag(cfg), err)
	}
	if err != nil {
		return statusSink{}, err
	}
	sink := statusSink{statuses: gh, prs: gh, comments: gh, git: gitAuth{token: token}}
	if app != nil {
		sink.git = gitAuth{tokens: appGitTokens(cfg, gh)}
	}
	return sink, nil
}

// appGitTokens is the source of the App installation's tokens for Git. A
// failed exchange fails the fetch with an error naming the App's flags, as
// a bad key does: it is the App's settings (or the key) that are wrong.
func appGitTokens(cfg Config, gh *status.GitHub) gitsource.TokenSource {
	return func(ctx context.Context) (secret.Value, error) {
		tok, err := gh.InstallationToken(ctx)
		if err != nil {
			return secret.Value{}, fmt.Errorf("github app (--github-app-id %d, --github-installation-id %d, %s): %w",
				cfg.GitHubAppID, cfg.GitHubInstallationID, appKeyFlag(cfg), err)
		}
		return tok, nil
	}
}

// readApp returns the GitHub App the agent authenticates as, with its key
// read from --github-app-key-file or --github-app-key-secret-arn, or nil
// when no App is configured. An App and a token are exclusive: which of the
// two the agent acts as must not depend on precedence rules.
func readApp(ctx context.Context, cfg Config, awsCfg aws.Config, token secret.Value) (*status.App, error) {
	if !cfg.usesApp() {
		return nil, nil
	}
	if !token.IsZero() {
		return nil, usagef("--github-app-id and CLOUDPIPE_GITHUB_TOKEN (or CLOUDPIPE_GITHUB_TOKEN_SECRET) both authenticate to GitHub: pass one")
	}
	var key secret.Value
	if cfg.GitHubAppKeyFile != "" {
		data, err := os.ReadFile(cfg.GitHubAppKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--github-app-key-file: %w", err)
		}
		key = secret.New(string(data))
	} else {
		out, err := secretsmanager.NewFromConfig(awsCfg).GetSecretValue(ctx,
			&secretsmanager.GetSecretValueInput{SecretId: aws.String(cfg.GitHubAppKeySecretARN)})
		if err != nil {
			return nil, fmt.Errorf("--github-app-key-secret-arn: read from Secrets Manager: %w", err)
		}
		key = secret.New(aws.ToString(out.SecretString))
	}
	if strings.TrimSpace(key.Reveal()) == "" {
		return nil, fmt.Errorf("%s: the key is empty", appKeyFlag(cfg))
	}
	return &status.App{ID: int64(cfg.GitHubAppID), InstallationID: int64(cfg.GitHubInstallationID), PrivateKey: key}, nil
}

// appKeyFlag names the flag the App's key came from, for errors.
func appKeyFlag(cfg Config) string {
	if cfg.GitHubAppKeyFile != "" {
		return "--github-app-key-file"
	}
	return "--github-app-key-secret-arn"
}

// serve serves srv on ln while the loop runs, until ctx ends; then it
// stops the server, giving requests in flight 5 seconds.
func serve(ctx context.Context, loop *pipesync.Loop, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()

	loopErr := loop.Run(ctx)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http server shutdown", "err", err)
	}
	if err := <-srvErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("agent stopped")
	return loopErr
}

// newServer serves health, readiness, metrics and the webhook.
func newServer(cfg Config, loop *pipesync.Loop, m *metrics.Metrics, hookSecret secret.Value, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := ready(loop.Last(), cfg); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if !hookSecret.IsZero() {
		branchRef := "refs/heads/" + cfg.Branch
		h, err := webhook.New(hookSecret, func(ev webhook.Event) {
			// A push to the tracked branch starts a pass at once; a pull
			// request event does too, so its plan is posted without waiting
			// for the next tick. Other pushes are only noted.
			if ev.Kind == "pull_request" || ev.Ref == branchRef {
				loop.Trigger()
			}
		}, log.With("component", "webhook"))
		if err != nil {
			return nil, err
		}
		h.OnOutcome = func(o webhook.Outcome) { m.Webhook(string(o)) }
		mux.Handle("POST /hooks/github", h)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}, nil
}

// ready reports whether the last pass is recent and reached Git.
func ready(last pipesync.PassResult, cfg Config) (bool, string) {
	if last.Started.IsZero() {
		return false, "no pass yet"
	}
	if last.Err != nil {
		return false, "last pass failed: " + status.ErrorDescription(last.Err.Error())
	}
	// Three missed ticks mean the loop is stuck; the schedule is at least
	// every minute by default, so allow a generous floor.
	if age := time.Since(last.Started); age > 15*time.Minute {
		return false, fmt.Sprintf("last pass %s ago", age.Round(time.Second))
	}
	return true, ""
}

// newNotifier starts the sender of notifications to --notify-url, or to
// the URL in Secrets Manager at --notify-url-secret-arn; nil when neither
// is set. m counts what it sends and drops.
func newNotifier(ctx context.Context, cfg Config, awsCfg aws.Config, m *metrics.Metrics, log *slog.Logger) (*notify.Notifier, error) {
	u := cfg.NotifyURL
	if u.IsZero() && cfg.NotifyURLSecretARN != "" {
		var err error
		if u, err = readSecretARN(ctx, awsCfg, cfg.NotifyURLSecretARN); err != nil {
			return nil, fmt.Errorf("--notify-url-secret-arn: %w", err)
		}
	}
	if u.IsZero() {
		return nil, nil
	}
	opts := notify.Options{URL: u.Reveal(), Logger: log}
	if m != nil {
		opts.OnOutcome = m.Notification
	}
	n, err := notify.New(opts)
	if err != nil {
		return nil, fmt.Errorf("--notify-url: %w", err)
	}
	return n, nil
}

// closeNotifier sends what is queued, for at most notifyDrain, as the
// agent stops.
func closeNotifier(ctx context.Context, n *notify.Notifier, log *slog.Logger) {
	if n == nil {
		return
	}
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyDrain)
	defer cancel()
	if err := n.Close(drain); err != nil {
		log.Warn("notifications dropped at shutdown", "err", err)
	}
}

// notifyDrain bounds the wait for queued notifications at shutdown: ECS
// gives a task 30 s between SIGTERM and SIGKILL by default, and the pass
// being applied has first claim on them.
const notifyDrain = 10 * time.Second

// envSecrets reads a secret from NAME, or from Secrets Manager at the ARN in
// NAME_ARN (CLOUDPIPE_GITHUB_TOKEN_SECRET for the token, as docs/design.md names it).
type envSecrets struct{ cfg aws.Config }

func secretsFrom(cfg aws.Config) envSecrets { return envSecrets{cfg: cfg} }

func (s envSecrets) read(ctx context.Context, name string) (secret.Value, error) {
	if v := os.Getenv(name); v != "" {
		return secret.New(v), nil
	}
	arnVar := name + "_ARN"
	if name == "CLOUDPIPE_GITHUB_TOKEN" {
		arnVar = "CLOUDPIPE_GITHUB_TOKEN_SECRET"
	}
	arn := os.Getenv(arnVar)
	if arn == "" {
		return secret.Value{}, nil
	}
	v, err := readSecretARN(ctx, s.cfg, arn)
	if err != nil {
		return secret.Value{}, fmt.Errorf("read %s: %w", arnVar, err)
	}
	return v, nil
}

// readSecretARN reads the secret at arn from Secrets Manager.
func readSecretARN(ctx context.Context, cfg aws.Config, arn string) (secret.Value, error) {
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return secret.Value{}, fmt.Errorf("from Secrets Manager: %w", err)
	}
	return secret.New(strings.TrimSpace(aws.ToString(out.SecretString))), nil
}

// repoFromURL derives owner/name from a repository URL
// (https://github.com/owner/name.git, git@github.com:owner/name.git).
func repoFromURL(raw string) (string, error) {
	p := raw
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		p = u.Path
	} else if _, after, ok := strings.Cut(raw, ":"); ok && strings.Contains(raw, "@") {
		p = after
	} else {
		return "", fmt.Errorf("cannot derive owner/name from %s: pass --github-repo", redactURL(raw))
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	owner, name := path.Split(p)
	owner = path.Base(strings.TrimSuffix(owner, "/"))
	if owner == "" || owner == "." || name == "" {
		return "", fmt.Errorf("cannot derive owner/name from %s: pass --github-repo", redactURL(raw))
	}
	return owner + "/" + name, nil
}

// redactURL hides credentials in a repository URL for logs and errors.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	return raw
}
