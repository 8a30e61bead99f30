// Package gitsource reads the config repository with go-git: a cheap "has the
// branch moved?" check from one ref advertisement, a fetch into a bare cache,
// pull request heads, and the files of any commit as an fs.FS.
//
// Remote access drives go-git's transport directly instead of going through
// git.Remote. Remote picks its transport from the process-wide
// client.Protocols map, so a custom HTTP client (Options.HTTPClient) would
// have to be installed there with client.InstallProtocol: global mutable state
// shared by every Source and every test. A transport per Source has none, and
// it lets Fetch skip the pack request when every advertised commit is already
// cached, so go-git's NoErrAlreadyUpToDate never arises.
package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	gitproto "github.com/go-git/go-git/v5/plumbing/transport/git"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Errors of a [Source]'s methods, wrapped with the branch, commit or redacted
// URL they concern; test with [errors.Is]. A remote that cannot be reached
// gives the transport's error (context.DeadlineExceeded after Timeout).
var (
	ErrBranchNotFound     = errors.New("branch not found")
	ErrCommitNotFound     = errors.New("commit not found")
	ErrRepositoryNotFound = errors.New("repository not found")
	ErrAuthFailed         = errors.New("authentication failed")
	// ErrTokenSource wraps the error of Options.TokenSource, and stands for
	// an empty token it returned: the operation sent no request.
	ErrTokenSource = errors.New("no token for the remote")
)

// PullRequest is a pull request's head as the server advertises it in
// refs/pull/<Number>/head. A server may keep the ref after the pull request
// is closed (GitHub does).
type PullRequest struct {
	Number int
	Head   string // commit hash
}

// ShortCommit abbreviates a commit hash to its first 7 characters, as git
// does, for messages. A string with a slash or a space among those 7 (a ref
// name, a path, a phrase) comes back whole, so no message shows half a name.
func ShortCommit(commit string) string {
	if len(commit) > 7 && !strings.ContainsAny(commit[:7], "/ ") {
		return commit[:7]
	}
	return commit
}

// RefState is what one ref listing says: the tracked branch's commit and the
// pull request heads, sorted by number.
type RefState struct {
	Head         string
	PullRequests []PullRequest
}

// Source is one repository and branch. Its methods are safe for concurrent
// use, and so are the fs.FS values it returns. Open one Source per cache
// directory per process: the lock that serializes access to the cache lives in
// the Source.
type Source struct {
	loc     *location
	branch  plumbing.ReferenceName
	timeout time.Duration
	tr      transport.Transport // nil for a local repository
	auth    transport.AuthMethod
	// tokens, when set, gives the password of each remote operation,
	// sent with user; auth is then nil.
	tokens TokenSource
	user   string

	mu   sync.Mutex // guards repo: go-git's filesystem storage is not safe for concurrent use
	repo *git.Repository
}

// Open validates o and opens the repository. A local path is opened in place,
// never cloned. For a remote, Open creates or opens the bare cache clone under
// CacheDir without touching the network; Fetch fills it. Errors:
// [Options.Validate]'s, ErrRepositoryNotFound for a local path that holds no
// repository, or the I/O error.
func Open(ctx context.Context, o Options) (*Source, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	loc, err := parseLocation(o.URL)
	if err != nil {
		return nil, err // unreachable: Validate parsed it
	}
	s := &Source{loc: loc, branch: plumbing.NewBranchReferenceName(o.Branch), timeout: o.Timeout}
	if loc.isLocal() {
		s.repo, err = git.PlainOpenWithOptions(loc.path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, fmt.Errorf("open %s: %w", loc.display, ErrRepositoryNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", loc.display, err)
		}
		return s, nil
	}
	if s.tr, s.auth, err = newTransport(loc, &o); err != nil {
		return nil, err
	}
	if o.TokenSource != nil {
		s.tokens, s.user = o.TokenSource, o.Username
	}
	dir := filepath.Join(o.CacheDir, loc.cacheName())
	if s.repo, err = openCache(dir); err != nil {
		return nil, fmt.Errorf("open cache %s of %s: %w", dir, loc.display, err)
	}
	return s, nil
}

func openCache(dir string) (*git.Repository, error) {
	repo, err := git.PlainOpen(dir)
	if !errors.Is(err, git.ErrRepositoryNotExists) {
		return repo, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	return git.PlainInit(dir, true)
}

func newTransport(loc *location, o *Options) (transport.Transport, transport.AuthMethod, error) {
	switch loc.scheme() {
	case "http", "https":
		var auth transport.AuthMethod
		switch {
		case !o.Token.IsZero():
			auth = &githttp.BasicAuth{Username: o.Username, Password: o.Token.Reveal()}
		case loc.user != "" || !loc.password.IsZero():
			auth = &githttp.BasicAuth{Username: loc.user, Password: loc.password.Reveal()}
		}
		return githttp.NewClient(o.HTTPClient), auth, nil
	case "ssh":
		return newSSHTransport(loc, o)
	default: // "git": the anonymous git:// protocol
		return gitproto.DefaultClient, nil, nil
	}
}

func newSSHTransport(loc *location, o *Options) (transport.Transport, transport.AuthMethod, error) {
	ep := loc.endpoint
	user := ep.User
	if user == "" {
		user = "git"
	}
	var (
		auth gitssh.AuthMethod
		err  error
	)
	if o.SSHKeyPath != "" {
		if auth, err = gitssh.NewPublicKeysFromFile(user, o.SSHKeyPath, ""); err != nil {
			return nil, nil, fmt.Errorf("read ssh key %s: %w", o.SSHKeyPath, err)
		}
	} else if auth, err = gitssh.NewSSHAgentAuth(user); err != nil {
		return nil, nil, fmt.Errorf("ssh agent for %s: %w", loc.display, err)
	}
	cfg, err := auth.ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("ssh config for %s: %w", loc.display, err)
	}
	hosts, err := gitssh.NewKnownHostsDb()
	if err != nil {
		return nil, nil, fmt.Errorf("ssh known hosts for %s: %w", loc.display, err)
	}
	port := ep.Port
	if port == 0 {
		port = gitssh.DefaultPort
	}
	cfg.HostKeyCallback = hosts.HostKeyCallback()
	// Offer only the key types known_hosts holds for this host, or the server
	// may present another type and fail the check.
	cfg.HostKeyAlgorithms = hosts.HostKeyAlgorithms(fmt.Sprintf("%s:%d", ep.Host, port))
	// go-git dials ssh without the context, so ClientConfig.Timeout is the
	// only bound on connecting. A config given to gitssh.NewClient replaces
	// every field of the one go-git builds from auth, hence the complete one.
	cfg.Timeout = o.Timeout
	return gitssh.NewClient(cfg), auth, nil
}

// Refs lists the tracked branch's head and the pull request heads. For a
// remote it costs one ref advertisement (git ls-remote) and downloads no
// objects; for a local repository it reads the refs. Errors:
// ErrBranchNotFound (the branch is missing or was deleted),
// ErrRepositoryNotFound, ErrAuthFailed, ErrTokenSource, or the transport's error.
func (s *Source) Refs(ctx context.Context) (RefState, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return RefState{}, err
	}
	head, ok := refs[s.branch]
	if !ok {
		return RefState{}, s.errBranch()
	}
	return RefState{Head: head.String(), PullRequests: pullRequests(refs)}, nil
}

// Head returns the commit of refs/heads/<Branch>; see [Source.Refs] for its
// cost and errors.
func (s *Source) Head(ctx context.Context) (string, error) {
	st, err := s.Refs(ctx)
	return st.Head, err
}

// PullRequests returns the pull request heads, sorted by number; see
// [Source.Refs] for its cost and errors, except that a missing branch is no
// error here. GitHub keeps refs/pull/N/head after a pull request is closed,
// so callers that must know which are open ask the forge's API.
func (s *Source) PullRequests(ctx context.Context) ([]PullRequest, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return nil, err
	}
	return pullRequests(refs), nil
}

func (s *Source) errBranch() error {
	return fmt.Errorf("branch %s of %s: %w", s.branch.Short(), s.loc.display, ErrBranchNotFound)
}

// listRefs returns the repository's references that name a commit directly.
func (s *Source) listRefs(ctx context.Context) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	if s.tr == nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		refs, err := s.cachedRefs()
		if err != nil {
			return nil, fmt.Errorf("read refs of %s: %w", s.loc.display, err)
		}
		return refs, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, ar, err := s.advertise(ctx)
	if err != nil {
		return nil, fmt.Errorf("list refs of %s: %w", s.loc.display, err)
	}
	// The answer is in: a failed close of a read-only session loses nothing.
	_ = sess.Close()
	return advertised(ar), nil
}

// advertise opens an upload-pack session and reads the ref advertisement:
// over HTTP, the single GET of info/refs. An empty repository advertises no
// refs. The caller closes the session.
func (s *Source) advertise(ctx context.Context) (transport.UploadPackSession, *packp.AdvRefs, error) {
	auth, err := s.authMethod(ctx)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.tr.NewUploadPackSession(s.loc.endpoint, auth)
	if err != nil {
		return nil, nil, translate(ctx, err)
	}
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return sess, packp.NewAdvRefs(), nil
	}
	if err != nil {
		_ = sess.Close() // the error that matters is err
		return nil, nil, translate(ctx, err)
	}
	return sess, ar, nil
}

// authMethod returns the credentials of one remote operation: the fixed
// ones, or basic auth with the token TokenSource gives now. Asking for each
// session (a Fetch's ref listing and pack share one) is what keeps a
// renewed token in use; the token lives only in the session's request
// headers, never in the cache's config or in an error.
func (s *Source) authMethod(ctx context.Context) (transport.AuthMethod, error) {
	if s.tokens == nil {
		return s.auth, nil
	}
	tok, err := s.tokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenSource, err)
	}
	if tok.IsZero() {
		// Going on without it would ask anonymously and fail as "not
		// found" on a private repository: say what is really wrong.
		return nil, fmt.Errorf("%w: the token source returned an empty token", ErrTokenSource)
	}
	return &githttp.BasicAuth{Username: s.user, Password: tok.Reveal()}, nil
}

func advertised(ar *packp.AdvRefs) map[plumbing.ReferenceName]plumbing.Hash {
	refs := make(map[plumbing.ReferenceName]plumbing.Hash, len(ar.References))
	for name, h := range ar.References {
		refs[plumbing.ReferenceName(name)] = h
	}
	return refs
}

// cachedRefs reads the local repository's hash references; s.mu is held.
func (s *Source) cachedRefs() (map[plumbing.ReferenceName]plumbing.Hash, error) {
	iter, err := s.repo.Storer.IterReferences()
	if err != nil {
		return nil, err
	}
	refs := map[plumbing.ReferenceName]plumbing.Hash{}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference {
			refs[r.Name()] = r.Hash()
		}
		return nil
	})
	return refs, err
}

// prNumber parses refs/pull/<N>/head, the name GitHub and Gitea give a pull
// request's head.
func prNumber(name plumbing.ReferenceName) (int, bool) {
	rest, ok := strings.CutPrefix(string(name), "refs/pull/")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "/head")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || strconv.Itoa(n) != num {
		return 0, false
	}
	return n, true
}

func pullRequests(refs map[plumbing.ReferenceName]plumbing.Hash) []PullRequest {
	var prs []PullRequest
	for name, h := range refs {
		if n, ok := prNumber(name); ok {
			prs = append(prs, PullRequest{Number: n, Head: h.String()})
		}
	}
	slices.SortFunc(prs, func(a, b PullRequest) int { return a.Number - b.Number })
	return prs
}

// Fetch makes the cache hold the tracked branch's head and every pull request
// head, with their history, as refs/heads/<Branch> and refs/pull/<N>/head (the
// refspecs +refs/heads/<Branch>:refs/heads/<Branch> and
// +refs/pull/*/head:refs/pull/*/head: forced, so a rewritten history simply
// replaces the old one). Pull request refs the server no longer advertises
// are removed. It costs one ref advertisement, plus one pack download only
// when a head is missing from the cache. It is a no-op for a local
// repository. Errors: as for [Source.Refs].
func (s *Source) Fetch(ctx context.Context) (err error) {
	if s.tr == nil {
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, ar, err := s.advertise(ctx)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", s.loc.display, err)
	}
	defer func() { _ = sess.Close() }() // a close error after a complete download loses nothing
	remote := advertised(ar)
	want := map[plumbing.ReferenceName]plumbing.Hash{}
	for name, h := range remote {
		if _, ok := prNumber(name); ok || name == s.branch {
			want[name] = h
		}
	}
	if _, ok := want[s.branch]; !ok {
		return s.errBranch()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.download(ctx, sess, ar, want); err != nil {
		return fmt.Errorf("fetch %s: %w", s.loc.display, translate(ctx, err))
	}
	if err := s.updateRefs(want); err != nil {
		return fmt.Errorf("update refs of %s: %w", s.loc.display, err)
	}
	return nil
}

// download asks for the wanted commits the cache lacks, in one upload-pack
// request, and stores the pack; s.mu is held.
func (s *Source) download(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, want map[plumbing.ReferenceName]plumbing.Hash) (err error) {
	var wants []plumbing.Hash
	for _, h := range want {
		// A commit in the cache has its whole history: a pack becomes
		// visible only once complete, and the cache is never shallow.
		if s.repo.Storer.HasEncodedObject(h) == nil || slices.Contains(wants, h) {
			continue
		}
		wants = append(wants, h)
	}
	if len(wants) == 0 {
		return nil
	}
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	req.Wants = wants
	if ar.Capabilities.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return err
		}
	}
	if req.Haves, err = s.haves(); err != nil {
		return err
	}
	resp, err := sess.UploadPack(ctx, req)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return nil // the server had nothing to send: the haves cover the wants
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := resp.Close(); err == nil {
			err = cerr
		}
	}()
	var pack io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		pack = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		pack = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	return packfile.UpdateObjectStorage(s.repo.Storer, pack)
}

// haves lists the commits the cache's refs point at, so the server sends only
// what is new since them; s.mu is held.
func (s *Source) haves() ([]plumbing.Hash, error) {
	refs, err := s.cachedRefs()
	if err != nil {
		return nil, err
	}
	var hs []plumbing.Hash
	for _, h := range refs {
		if s.repo.Storer.HasEncodedObject(h) == nil && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	return hs, nil
}

// updateRefs points the cache's refs at what the server advertised, forced,
// and drops pull request refs that are gone; s.mu is held.
func (s *Source) updateRefs(want map[plumbing.ReferenceName]plumbing.Hash) error {
	for name, h := range want {
		if err := s.repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
			return err
		}
	}
	refs, err := s.cachedRefs()
	if err != nil {
		return err
	}
	for name := range refs {
		if _, isPR := prNumber(name); isPR {
			if _, ok := want[name]; !ok {
				if err := s.repo.Storer.RemoveReference(name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ChangedFiles returns the sorted paths of files added, removed or modified
// between two commits (a rename is both paths). An empty from means the empty
// tree, so every file of to is listed. Errors: ErrCommitNotFound, or
// ctx.Err().
func (s *Source) ChangedFiles(ctx context.Context, from, to string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var a *object.Tree
	if from != "" {
		c, err := s.commit(from)
		if err != nil {
			return nil, err
		}
		if a, err = c.Tree(); err != nil {
			return nil, fmt.Errorf("tree of %s: %w", from, err)
		}
	}
	c, err := s.commit(to)
	if err != nil {
		return nil, err
	}
	b, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", to, err)
	}
	changes, err := object.DiffTreeWithOptions(ctx, a, b, &object.DiffTreeOptions{})
	if errors.Is(err, object.ErrCanceled) {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("diff %s..%s: %w", from, to, err)
	}
	var paths []string
	for _, ch := range changes {
		for _, p := range []string{ch.From.Name, ch.To.Name} {
			if p != "" {
				paths = append(paths, p)
			}
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}

// commit resolves a full hash or any revision go-git understands (a short
// hash, a branch name, pull/1/head); s.mu is held.
func (s *Source) commit(rev string) (*object.Commit, error) {
	h := plumbing.NewHash(rev)
	if !plumbing.IsHash(rev) {
		p, err := s.repo.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return nil, fmt.Errorf("commit %s in %s: %w", rev, s.loc.display, &boundaryError{ErrCommitNotFound, err})
		}
		h = *p
	}
	c, err := s.repo.CommitObject(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("commit %s in %s: %w", rev, s.loc.display, ErrCommitNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s in %s: %w", rev, s.loc.display, err)
	}
	return c, nil
}

// boundaryError keeps a go-git error's message and chain and also matches one
// of our sentinels, so callers need not know go-git's errors.
type boundaryError struct{ kind, err error }

func (e *boundaryError) Error() string   { return e.err.Error() }
func (e *boundaryError) Unwrap() []error { return []error{e.kind, e.err} }

// translate maps transport errors to ours. When ctx has ended it also makes
// the error match ctx.Err(): go-git wraps some failures in
// plumbing.UnexpectedError, which hides the cause from errors.Is.
func translate(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return &boundaryError{ctx.Err(), err}
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return &boundaryError{ErrRepositoryNotFound, err}
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return &boundaryError{ErrAuthFailed, err}
	}
	return err
}
