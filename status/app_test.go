package status_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/status"
)

// appServer follows GitHub's exchange of an App's JWT for an installation
// token (POST /app/installations/{id}/access_tokens, answered with
// {token, expires_at};
// https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation
// and .../generating-a-json-web-token-jwt-for-a-github-app): it checks the
// JWT's RS256 signature with the App's public key, its issuer (the App ID)
// and its iat and exp (exp at most 10 minutes ahead), and hands out a real
// Gitea token. Every other request goes to Gitea, and must carry that
// token.
type appServer struct {
	t         *testing.T
	key       *rsa.PublicKey
	appID     int64
	install   int64
	token     string        // what the exchange hands out: Gitea's token
	expiresIn time.Duration // expires_at of each token, from now

	mu        sync.Mutex
	exchanges int
	proxied   int
	problems  []string
}

func (s *appServer) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func (s *appServer) handler(gitea *url.URL) http.Handler {
	proxy := httputil.NewSingleHostReverseProxy(gitea)
	exchange := fmt.Sprintf("/api/v1/app/installations/%d/access_tokens", s.install)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == exchange && r.Method == http.MethodPost {
			if why := s.checkJWT(r.Header.Get("Authorization")); why != "" {
				s.fail("exchange: %s", why)
				http.Error(w, `{"message":"A JSON web token could not be decoded"}`, http.StatusUnauthorized)
				return
			}
			s.mu.Lock()
			s.exchanges++
			s.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(map[string]any{
				"token":      s.token,
				"expires_at": time.Now().Add(s.expiresIn).UTC().Format(time.RFC3339),
			})
			return
		}
		if strings.Contains(r.URL.Path, "/app/") {
			s.fail("unexpected %s %s", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "token "+s.token {
			s.fail("%s %s without the installation token", r.Method, r.URL.Path)
		}
		s.mu.Lock()
		s.proxied++
		s.mu.Unlock()
		proxy.ServeHTTP(w, r)
	})
}

// checkJWT says what is wrong with the Authorization header of an
// exchange, or "".
func (s *appServer) checkJWT(auth string) string {
	jwt, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return "no bearer token"
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "not a JWT"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
	for i, v := range []any{&header, &claims} {
		data, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(data, v) != nil {
			return "part " + strconv.Itoa(i) + " does not decode"
		}
	}
	if header.Alg != "RS256" {
		return "alg " + header.Alg
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "signature does not decode"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.key, crypto.SHA256, sum[:], sig); err != nil {
		return "signature does not verify with the App's public key"
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != strconv.FormatInt(s.appID, 10):
		return "iss " + claims.Iss
	case claims.Iat > now+60:
		return "iat in the future"
	case claims.Exp <= now:
		return "expired"
	case claims.Exp > now+600:
		return "exp more than 10 minutes ahead"
	}
	return ""
}

func (s *appServer) counts() (exchanges, proxied int, problems []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges, s.proxied, append([]string(nil), s.problems...)
}

func newAppKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
}

// TestAppAuthOnGitea posts a status and a plan comment as a GitHub App
// installation: the exchange answers as GitHub does, Gitea takes the
// requests with the token handed out.
func TestAppAuthOnGitea(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	gitea, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	key, pemKey := newAppKey(t)
	_, otherPEM := newAppKey(t)
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
			as := &appServer{t: t, key: &key.PublicKey, appID: 123, install: 456, token: f.srv.Token, expiresIn: tc.expiresIn}
			srv := httptest.NewServer(as.handler(gitea))
			defer srv.Close()
			g, err := status.New(status.Options{
				APIURL: srv.URL + "/api/v1/",
				Repo:   f.srv.RepoName(f.repo),
				App:    &status.App{ID: 123, InstallationID: 456, PrivateKey: secret.New(tc.pem)},
				Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if err != nil {
				t.Fatal(err)
			}
			s := status.Status{Commit: f.commit, Context: "app/" + tc.name, State: status.Success, Description: tc.name}
			posted, postErr := g.Post(t.Context(), s)
			_, commentErr := g.PostPlanComment(t.Context(), pr, "plan by the app: "+tc.name)
			exchanges, proxied, problems := as.counts()
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
	_, pemKey := newAppKey(t)
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
