package testenv

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// AppExchange plays GitHub's side of a GitHub App in front of Gitea, which
// has no Apps: it follows GitHub's exchange of an App's JWT for an
// installation token (POST {api}/app/installations/{id}/access_tokens,
// answered with {token, expires_at};
// https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation
// and .../generating-a-json-web-token-jwt-for-a-github-app): it checks the
// JWT's RS256 signature with the App's public key, its issuer (the App ID)
// and its iat and exp (exp at most 10 minutes ahead), and hands out Token,
// a real Gitea token. Every other request goes to Gitea, and must carry
// that token. Set the fields, then serve Handler.
type AppExchange struct {
	PublicKey      *rsa.PublicKey // the App's
	AppID          int64
	InstallationID int64
	Token          string        // what the exchange hands out: a Gitea token
	ExpiresIn      time.Duration // expires_at of each token, from now
	// Slug, when set, makes the API answer as GitHub does an App: the
	// installation token may not read the authenticated user (GET /user:
	// 403, "Resource not accessible by integration"), and GET /app with
	// the App's JWT names the App by this slug, its bot user being
	// "<slug>[bot]".
	// https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app
	Slug string

	mu        sync.Mutex
	exchanges int
	proxied   int
	problems  []string
}

func (s *AppExchange) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// Handler answers the token exchange under /api/v1/ (the API URL is the
// server's URL + "/api/v1/", as Gitea's) and proxies every other request
// to gitea, Gitea's root URL.
func (s *AppExchange) Handler(gitea *url.URL) http.Handler {
	proxy := httputil.NewSingleHostReverseProxy(gitea)
	exchange := fmt.Sprintf("/api/v1/app/installations/%d/access_tokens", s.InstallationID)
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
			_ = json.NewEncoder(w).Encode(map[string]any{
				"token":      s.Token,
				"expires_at": time.Now().Add(s.ExpiresIn).UTC().Format(time.RFC3339),
			})
			return
		}
		if s.Slug != "" && r.Method == http.MethodGet {
			switch r.URL.Path {
			case "/api/v1/user":
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, `{"message":"Resource not accessible by integration"}`)
				return
			case "/api/v1/app":
				if why := s.checkJWT(r.Header.Get("Authorization")); why != "" {
					s.fail("GET /app: %s", why)
					http.Error(w, `{"message":"A JSON web token could not be decoded"}`, http.StatusUnauthorized)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"id": s.AppID, "slug": s.Slug, "name": s.Slug})
				return
			}
		}
		if strings.Contains(r.URL.Path, "/app/") {
			s.fail("unexpected %s %s", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "token "+s.Token {
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
func (s *AppExchange) checkJWT(auth string) string {
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
	if err := rsa.VerifyPKCS1v15(s.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return "signature does not verify with the App's public key"
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != strconv.FormatInt(s.AppID, 10):
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

// Counts returns how many tokens were handed out, how many requests went
// on to Gitea, and what was wrong with the requests refused or proxied.
func (s *AppExchange) Counts() (exchanges, proxied int, problems []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges, s.proxied, append([]string(nil), s.problems...)
}

// NewAppKey returns a new App private key and its PEM (PKCS#1), as GitHub
// lets an App's owner download it.
func NewAppKey(tb testing.TB) (*rsa.PrivateKey, string) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
}
