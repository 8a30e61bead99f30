package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"

	"github.com/cloudpipe/cloudpipe/internal/secret"
)

// App is a GitHub App installation the agent authenticates as, instead of
// a personal token: the App signs a JWT with its private key, exchanges it
// for an installation token (POST /app/installations/{id}/access_tokens,
// https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation)
// and sends that token. Installation tokens last an hour; a new one is
// fetched a minute before the one in use expires, by
// github.com/bradleyfalzon/ghinstallation/v2.
type App struct {
	ID             int64        // the App's ID, from its settings page
	InstallationID int64        // the installation's ID, in its settings URL
	PrivateKey     secret.Value // the App's private key, PEM (PKCS#1 or PKCS#8)
}

// ErrBadAppKey is wrapped by New's error when App.PrivateKey is not a PEM
// RSA private key. The error never quotes the key.
var ErrBadAppKey = errors.New("the github app private key is not a PEM-encoded RSA private key")

// ErrNoApp is returned by [GitHub.InstallationToken] when the client
// authenticates with a token, not as an App.
var ErrNoApp = errors.New("no github app configured")

// clients returns a go-github client that authenticates as the
// installation and one that authenticates as the App itself (to read the
// App's slug), both sending through hc's transport to the API at base:
// the token exchange goes to the same server as every other call (GitHub
// Enterprise, or a test server). It also returns the installation's
// transport, which holds the current installation token.
func (a *App) clients(hc *http.Client, base *url.URL) (*github.Client, *github.Client, *ghinstallation.Transport, error) {
	switch {
	case a.ID <= 0:
		return nil, nil, nil, errors.New("github app: the app id must be a positive number")
	case a.InstallationID <= 0:
		return nil, nil, nil, errors.New("github app: the installation id must be a positive number")
	case a.PrivateKey.IsZero():
		return nil, nil, nil, errors.New("github app: no private key")
	}
	tr := hc.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	apps, err := ghinstallation.NewAppsTransport(tr, a.ID, []byte(a.PrivateKey.Reveal()))
	if err != nil {
		// ghinstallation's error names the key's format, never its bytes,
		// but a key must not depend on that: say what is wrong ourselves.
		return nil, nil, nil, ErrBadAppKey
	}
	apps.BaseURL = strings.TrimSuffix(base.String(), "/")
	inst := ghinstallation.NewFromAppsTransport(apps, a.InstallationID) // takes apps.BaseURL
	// The exchange honours the calling request's context (and so
	// requestTimeout); the client's own timeout is a backstop.
	inst.Client = &http.Client{Transport: tr, Timeout: requestTimeout}
	apps.Client = inst.Client
	instClient := github.NewClient(&http.Client{Transport: inst, Timeout: hc.Timeout})
	appClient := github.NewClient(&http.Client{Transport: apps, Timeout: hc.Timeout})
	return instClient, appClient, inst, nil
}

// InstallationToken returns the App installation's token, from the
// exchange that also serves g's API calls: the one in use, or a new one
// when it expires within a minute. It is for Git over HTTPS, where GitHub
// takes an installation token as the basic-auth password next to the user
// name x-access-token, given the App's Contents permission ("You can also
// use an installation access token to authenticate for HTTP-based Git
// access",
// https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation).
// Safe for concurrent use. Errors: ErrNoApp without an App, or the failed
// exchange, which never quotes a token or the key.
func (g *GitHub) InstallationToken(ctx context.Context) (secret.Value, error) {
	if g.installation == nil {
		return secret.Value{}, ErrNoApp
	}
	tok, err := g.installation.Token(ctx)
	if err != nil {
		return secret.Value{}, fmt.Errorf("installation token: %w", err)
	}
	return secret.New(tok), nil
}

// String never shows the key.
func (a App) String() string {
	return fmt.Sprintf("github app %d installation %d", a.ID, a.InstallationID)
}
