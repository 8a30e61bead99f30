package status

import "context"

// Login exposes the login the agent looks for as its plan comments'
// author, so a test can check the GitHub App fallback that Gitea, which
// has no Apps, never takes on its own.
func (g *GitHub) Login(ctx context.Context) (string, error) { return g.login(ctx) }
