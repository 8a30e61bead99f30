package gitsource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/cloudpipe/cloudpipe/internal/secret"
)

// Defaults filled in by [Options.Validate].
const (
	DefaultBranch   = "main"
	DefaultTimeout  = 30 * time.Second
	DefaultUsername = "x-access-token" // what GitHub expects next to an installation or personal token
)

// Errors returned by [Options.Validate] and [Open]. They are wrapped with the
// offending value (never a credential); test with [errors.Is].
var (
	ErrMissingURL      = errors.New("missing repository URL")
	ErrInvalidURL      = errors.New("invalid repository URL")
	ErrMissingCacheDir = errors.New("missing cache directory (required for a remote repository)")
	ErrInvalidBranch   = errors.New("invalid branch name")
	ErrInvalidTimeout  = errors.New("invalid timeout")
	ErrInvalidAuth     = errors.New("credentials do not fit the URL scheme")
)

// TokenSource returns the token a remote operation sends as the HTTP(S)
// basic-auth password: see Options.TokenSource.
type TokenSource func(ctx context.Context) (secret.Value, error)

// Options says which repository and branch a [Source] reads and how to reach it.
// The zero value of every field except URL (and CacheDir for a remote) is
// useful; [Options.Validate] fills the defaults.
type Options struct {
	// URL is https://..., http://..., ssh://git@host/x.git, git@host:x.git,
	// git://..., or a local path (file://... or a directory holding a repository,
	// bare or not). Credentials embedded in an http(s) URL are used when neither
	// Token nor TokenSource is set and never appear in errors or logs.
	URL string
	// Branch is the tracked branch; default "main".
	Branch string
	// CacheDir holds the bare clone of a remote, one sub-directory per URL.
	// Required for remotes, ignored for local paths. Deleting it is safe: it
	// is refilled by the next Fetch.
	CacheDir string
	// Token is sent as the HTTP(S) basic-auth password, with Username.
	Token secret.Value
	// TokenSource, instead of Token, is asked for the password before every
	// remote operation (each ref listing, each fetch), within that
	// operation's Timeout, so a short-lived token, such as a GitHub App's
	// installation token that lasts an hour, is current whenever it is sent.
	// It is called on every poll: it should cache its token until near
	// expiry, and be safe for concurrent use. Its error fails the
	// operation (wrapped with ErrTokenSource) and must not quote a token.
	TokenSource TokenSource
	// Username goes with Token or TokenSource; default "x-access-token"
	// when either is set.
	Username string
	// SSHKeyPath is a PEM private key (without passphrase) for ssh URLs; when
	// empty, ssh uses the agent at SSH_AUTH_SOCK. Host keys are checked
	// against known_hosts (SSH_KNOWN_HOSTS or ~/.ssh/known_hosts).
	SSHKeyPath string
	// HTTPClient carries http(s) requests; nil means a client on
	// http.DefaultTransport. It is handed to this Source's own go-git
	// transport (githttp.NewClient), never installed globally, so two Sources
	// (or two tests) with different clients do not interfere.
	HTTPClient *http.Client
	// Timeout bounds each remote operation (one ref listing, one fetch);
	// default 30s. Raise it for a first fetch of a large repository.
	Timeout time.Duration
}

// Validate fills defaults and reports every problem at once, joined; each
// matches one of ErrMissingURL, ErrInvalidURL, ErrMissingCacheDir,
// ErrInvalidBranch, ErrInvalidTimeout or ErrInvalidAuth. It does no I/O.
func (o *Options) Validate() error {
	var errs []error
	if o.Branch == "" {
		o.Branch = DefaultBranch
	}
	if err := plumbing.NewBranchReferenceName(o.Branch).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %q", ErrInvalidBranch, o.Branch))
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	case o.Timeout < 0:
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidTimeout, o.Timeout))
	}
	if (!o.Token.IsZero() || o.TokenSource != nil) && o.Username == "" {
		o.Username = DefaultUsername
	}
	if !o.Token.IsZero() && o.TokenSource != nil {
		// Which password is sent must not depend on a precedence rule.
		errs = append(errs, fmt.Errorf("%w: Token and TokenSource both give the password: set one", ErrInvalidAuth))
	}
	if o.URL == "" {
		errs = append(errs, ErrMissingURL)
		return errors.Join(errs...)
	}
	loc, err := parseLocation(o.URL)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if !loc.isLocal() && o.CacheDir == "" {
		errs = append(errs, fmt.Errorf("%w: %s", ErrMissingCacheDir, loc.display))
	}
	if !o.Token.IsZero() && !loc.isHTTP() {
		errs = append(errs, fmt.Errorf("%w: a token is only sent over http(s), not to %s", ErrInvalidAuth, loc.display))
	}
	if o.TokenSource != nil && !loc.isHTTP() {
		errs = append(errs, fmt.Errorf("%w: a TokenSource's token is only sent over http(s), not to %s", ErrInvalidAuth, loc.display))
	}
	if o.SSHKeyPath != "" && loc.scheme() != "ssh" {
		errs = append(errs, fmt.Errorf("%w: an ssh key is only used for ssh URLs, not for %s", ErrInvalidAuth, loc.display))
	}
	return errors.Join(errs...)
}

// LogValue logs the options without credentials, so a whole Options value can
// be passed to slog safely.
func (o Options) LogValue() slog.Value {
	display := ""
	if o.URL != "" {
		display = "[invalid]"
		if loc, err := parseLocation(o.URL); err == nil {
			display = loc.display
		}
	}
	return slog.GroupValue(
		slog.String("url", display),
		slog.String("branch", o.Branch),
		slog.String("cache_dir", o.CacheDir),
		slog.Bool("token", !o.Token.IsZero()),
		slog.Bool("token_source", o.TokenSource != nil),
		slog.Duration("timeout", o.Timeout),
	)
}

// location is a parsed Options.URL.
type location struct {
	path     string              // local repository directory (absolute); empty for a remote
	endpoint *transport.Endpoint // remote, stripped of any credentials
	display  string              // safe for errors and logs
	user     string              // from the URL's userinfo (http(s) only)
	password secret.Value        // from the URL's userinfo (http(s) only)
}

func (l *location) isLocal() bool { return l.endpoint == nil }
func (l *location) isHTTP() bool  { s := l.scheme(); return s == "http" || s == "https" }

// scheme is the transport protocol of a remote ("http", "https", "ssh",
// "git"), or "" for a local repository.
func (l *location) scheme() string {
	if l.endpoint == nil {
		return ""
	}
	return l.endpoint.Protocol
}

// scpLike matches git's "[user@]host:path" form. go-git's own matcher wants a
// slash in the path, so it would take git@host:x.git for a local path.
var scpLike = regexp.MustCompile(`^(?:([^@/:\s]+)@)?([^@/:\s]+):([^/].*|/.+)$`)

func parseLocation(raw string) (*location, error) {
	if !strings.Contains(raw, "://") {
		// On Windows, C:\repo is a drive letter, not a host.
		if m := scpLike.FindStringSubmatch(raw); m != nil && (runtime.GOOS != "windows" || len(m[2]) > 1) {
			return &location{
				endpoint: &transport.Endpoint{Protocol: "ssh", User: m[1], Host: m[2], Port: 22, Path: m[3]},
				display:  raw, // this form has no place for a password
			}, nil
		}
		abs, err := filepath.Abs(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
		}
		return &location{path: abs, display: abs}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, credentials included: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	switch u.Scheme {
	case "file":
		p := filepath.FromSlash(u.Path)
		return &location{path: p, display: p}, nil
	case "http", "https", "ssh", "git":
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q", ErrInvalidURL, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: no host in %s", ErrInvalidURL, u.Redacted())
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidURL, u.Redacted())
	}
	loc := &location{endpoint: ep}
	safe := *u
	if u.User != nil {
		pass, hasPass := u.User.Password()
		if u.Scheme == "http" || u.Scheme == "https" {
			// Credentials travel in the Authorization header instead, so no
			// request URL, and so no net/http or go-git error, can carry them.
			loc.user, loc.password = u.User.Username(), secret.New(pass)
			ep.User, ep.Password = "", ""
			if !hasPass {
				// https://TOKEN@host/x.git is a common way to pass a token:
				// a lone http user name is treated as a credential too.
				safe.User = url.User("xxxxx")
			}
		} else {
			ep.Password = "" // an ssh password in a URL is never used
		}
	}
	loc.display = safe.Redacted()
	return loc, nil
}

// cacheName is the directory name of a remote's bare clone: readable, and
// unique per URL. It hashes the redacted URL, so a rotated token keeps its cache.
func (l *location) cacheName() string {
	sum := sha256.Sum256([]byte(l.display))
	base := strings.TrimSuffix(filepath.Base(filepath.ToSlash(l.endpoint.Path)), ".git")
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, base)
	base = strings.Trim(base, ".")
	if base == "" {
		base = "repo"
	}
	return base + "-" + hex.EncodeToString(sum[:8]) + ".git"
}
