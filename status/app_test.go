package status_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/status"
)

// TestAppAuthOnGitea posts a status and a plan comment as a GitHub App
// installation: the exchange answers as GitHub does, Gitea takes the
// requests with the token handed out.
func TestAppAuthOnGitea(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	key, pemKey := testenv.NewAppKey(t)
	_, otherPEM := testenv.NewAppKey(t)
	pr := f.pullRequest(t, "app")

	for _, tc := range []struct {
		name      string
		expiresIn time.Duration
		pem       string
	}{
		// An hour, as GitHub's tokens: one exchange serves every request.
		{"fresh token", time.Hour, pemKey},
		// Within ghinstallation's minute of margin: every request renews.
		{"token near expiry", 30 * time.Second, pemKey},
		// A key that is not the App's: the exchange refuses it.
		{"wrong key", time.Hour, otherPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := &testenv.AppExchange{PublicKey: &key.PublicKey, AppID: 123, InstallationID: 456, Token: f.srv.Token, ExpiresIn: tc.expiresIn}
			g, err := f.asApp(t, as, tc.pem, slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			s := status.Status{Commit: f.commit, Context: "app/" + tc.name, State: status.Success, Description: tc.name}
			posted, postErr := g.Post(t.Context(), s)
			_, commentErr := g.PostPlanComment(t.Context(), pr, "plan by the app: "+tc.name)
			exchanges, proxied, problems := as.Counts()
			if tc.name == "wrong key" {
				if postErr == nil || commentErr == nil {
					t.Errorf("with a wrong key: Post %v, PostPlanComment %v; want errors", postErr, commentErr)
				}
				if exchanges != 0 || proxied != 0 {
					t.Errorf("with a wrong key: %d exchanges, %d requests reached Gitea", exchanges, proxied)
				}
				return
			}
			if postErr != nil || !posted || commentErr != nil {
				t.Fatalf("Post = %v, %v; PostPlanComment: %v", posted, postErr, commentErr)
			}
			for _, p := range problems {
				t.Error(p)
			}
			if f.countOf(t, s.Context) != 1 {
				t.Errorf("status %s is not on Gitea", s.Context)
			}
			mine := f.agentComments(t, pr)
			if len(mine) != 1 || !strings.HasSuffix(mine[0].Body, "plan by the app: "+tc.name) {
				t.Errorf("agent comments: %+v", mine)
			}
			// Post reads the commit's statuses and creates one; the
			// comment reads the user and the comments, then writes.
			if proxied < 4 {
				t.Errorf("%d requests reached Gitea, want at least 4", proxied)
			}
			want := 1
			if tc.expiresIn < time.Minute {
				want = proxied
			}
			if exchanges != want {
				t.Errorf("%d token exchanges for %d requests, want %d", exchanges, proxied, want)
			}
		})
	}
	f.checkNoToken(t)
}

func TestAppOptionsChecked(t *testing.T) {
	_, pemKey := testenv.NewAppKey(t)
	bad := "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END RSA PRIVATE KEY-----\n"
	for _, tc := range []struct {
		name    string
		o       status.Options
		wantKey bool // ErrBadAppKey
	}{
		{"bad key", status.Options{Repo: "o/r", App: &status.App{ID: 1, InstallationID: 2, PrivateKey: secret.New(bad)}}, true},
		{"no key", status.Options{Repo: "o/r", App: &status.App{ID: 1, InstallationID: 2}}, false},
		{"no app id", status.Options{Repo: "o/r", App: &status.App{InstallationID: 2, PrivateKey: secret.New(pemKey)}}, false},
		{"no installation", status.Options{Repo: "o/r", App: &status.App{ID: 1, PrivateKey: secret.New(pemKey)}}, false},
		{"token and app", status.Options{Repo: "o/r", Token: secret.New("t"), App: &status.App{ID: 1, InstallationID: 2, PrivateKey: secret.New(pemKey)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := status.New(tc.o)
			if err == nil {
				t.Fatal("New accepted it")
			}
			if errors.Is(err, status.ErrBadAppKey) != tc.wantKey {
				t.Errorf("New = %v; ErrBadAppKey wanted: %v", err, tc.wantKey)
			}
			if strings.Contains(err.Error(), "bm90IGEga2V5") || strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
	if _, err := status.New(status.Options{Repo: "o/r", App: &status.App{ID: 1, InstallationID: 2, PrivateKey: secret.New(pemKey)}}); err != nil {
		t.Errorf("New with a good app: %v", err)
	}
	app := status.App{ID: 1, InstallationID: 2, PrivateKey: secret.New(pemKey)}
	for _, text := range []string{fmt.Sprint(app), fmt.Sprintf("%+v", app), fmt.Sprintf("%#v", app)} {
		if strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("the app prints its key: %s", text)
		}
	}
}

// InstallationToken hands out the token the API calls use, from the same
// exchange: an hour's token serves both, one near expiry is renewed on
// every call. A client with a plain token has none to give.
func TestAppInstallationToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	key, pemKey := testenv.NewAppKey(t)
	_, otherPEM := testenv.NewAppKey(t)
	for _, tc := range []struct {
		name          string
		expiresIn     time.Duration
		pem           string
		wantExchanges int // after one Post and two InstallationTokens
	}{
		{"fresh token", time.Hour, pemKey, 1},
		{"token near expiry", 30 * time.Second, pemKey, 4}, // Post reads, then creates
		{"wrong key", time.Hour, otherPEM, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := &testenv.AppExchange{PublicKey: &key.PublicKey, AppID: 123, InstallationID: 456, Token: f.srv.Token, ExpiresIn: tc.expiresIn}
			g, err := f.asApp(t, as, tc.pem, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, postErr := g.Post(t.Context(), status.Status{Commit: f.commit, Context: "token/" + tc.name, State: status.Success})
			var toks []secret.Value
			var errs []error
			for range 2 {
				tok, err := g.InstallationToken(t.Context())
				toks, errs = append(toks, tok), append(errs, err)
			}
			exchanges, _, _ := as.Counts()
			if exchanges != tc.wantExchanges {
				t.Errorf("%d exchanges for a Post and two tokens; want %d", exchanges, tc.wantExchanges)
			}
			if tc.name == "wrong key" {
				for _, err := range append(errs, postErr) {
					if err == nil {
						t.Fatal("a wrong key gave a token")
					}
					if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), f.srv.Token) {
						t.Errorf("the error quotes a secret: %v", err)
					}
				}
				return
			}
			if postErr != nil {
				t.Fatal(postErr)
			}
			for i, tok := range toks {
				if errs[i] != nil || tok.Reveal() != f.srv.Token {
					t.Errorf("InstallationToken #%d: %v; want the token the exchange handed out", i+1, errs[i])
				}
			}
		})
	}
	g, err := status.New(status.Options{Repo: "o/r", Token: secret.New("t")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.InstallationToken(t.Context()); !errors.Is(err, status.ErrNoApp) {
		t.Errorf("InstallationToken with a plain token = %v; want ErrNoApp", err)
	}
}

// TestAppLoginForComments checks whose comments the agent takes for its
// own when it is a GitHub App: GitHub refuses an installation token
// GET /user, so the login is the App's bot user, "<slug>[bot]", read from
// GET /app with the App's JWT; where /user answers (Gitea, a personal
// token) it is that user.
func TestAppLoginForComments(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	key, pemKey := testenv.NewAppKey(t)
	for _, tc := range []struct {
		name, slug, want string
	}{
		{"as on GitHub", "cloudpipe-agent", "cloudpipe-agent[bot]"},
		{"user readable", "", f.srv.User},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := &testenv.AppExchange{PublicKey: &key.PublicKey, AppID: 123, InstallationID: 456, Token: f.srv.Token,
				ExpiresIn: time.Hour, Slug: tc.slug}
			g, err := f.asApp(t, as, pemKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Login(t.Context())
			if err != nil || got != tc.want {
				t.Errorf("Login = %q, %v; want %q", got, err, tc.want)
			}
			if _, _, problems := as.Counts(); len(problems) > 0 {
				t.Errorf("requests the App's server refused or did not expect: %q", problems)
			}
		})
	}
}

// asApp returns a client of f's repository acting as App 123
// (installation 456), signing with pemKey, through the exchange as in front
// of f's Gitea; the exchange's server stops with the test.
func (f *fixture) asApp(t *testing.T, as *testenv.AppExchange, pemKey string, logger *slog.Logger) (*status.GitHub, error) {
	t.Helper()
	gitea, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(as.Handler(gitea))
	t.Cleanup(srv.Close)
	return status.New(status.Options{APIURL: srv.URL + "/api/v1/", Repo: f.srv.RepoName(f.repo),
		App: &status.App{ID: 123, InstallationID: 456, PrivateKey: secret.New(pemKey)}, Logger: logger})
}
