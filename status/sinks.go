package status

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// Discard stands in for GitHub when the agent has no token: Post posts
// nothing and says so once, with a warning, rather than on every status.
// The zero value is ready to use; a Discard must not be copied after first
// use.
type Discard struct {
	// Logger receives the one warning; nil drops it.
	Logger *slog.Logger

	once, commentOnce sync.Once
}

// Post drops s and returns false and no error; the first call logs a
// warning that statuses are skipped.
func (d *Discard) Post(ctx context.Context, s Status) (bool, error) {
	d.once.Do(func() {
		if d.Logger != nil {
			d.Logger.WarnContext(ctx, "no github token, commit statuses skipped",
				"component", "status", "commit", s.Commit, "context", s.Context)
		}
	})
	return false, nil
}

// Console prints statuses instead of posting them, for the local demo, one
// line each: "status <context> <state>: <description>". Like GitHub it
// skips a status that is already the latest of its context on its commit.
// The zero value prints nothing; a Console must not be copied after first
// use. It is safe for concurrent use.
type Console struct {
	// W receives the lines; nil drops them.
	W io.Writer

	mu       sync.Mutex           // guards latest and comments and serialises writes to W
	latest   map[[2]string]Status // by commit and context
	comments map[int]string       // plan comment bodies by pull request
}

// Post prints s unless it repeats the latest status of its context on its
// commit, and reports whether it printed. It returns ErrInvalid for a
// status GitHub would refuse, and W's write error.
func (c *Console) Post(_ context.Context, s Status) (bool, error) {
	if err := s.validate(); err != nil {
		return false, fmt.Errorf("print status %s: %w", s.Context, err)
	}
	s.Description = cut(oneLine(s.Description))
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{s.Commit, s.Context}
	if c.latest[key] == s {
		return false, nil
	}
	if c.W != nil {
		if _, err := fmt.Fprintf(c.W, "status %s %s: %s\n", s.Context, s.State, s.Description); err != nil {
			return false, fmt.Errorf("print status %s: %w", s.Context, err)
		}
	}
	if c.latest == nil {
		c.latest = map[[2]string]Status{}
	}
	c.latest[key] = s
	return true, nil
}
