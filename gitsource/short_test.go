package gitsource_test

import (
	"testing"

	"github.com/cloudpipe/cloudpipe/gitsource"
)

func TestShortCommit(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"c0ffee0123456789abcdef0123456789abcdef01", "c0ffee0"},
		{"c0ffee01", "c0ffee0"},
		{"c0ffee0", "c0ffee0"},
		{"abc", "abc"},
		{"", ""},
		{"refs/heads/main", "refs/heads/main"},
		{"not a commit", "not a commit"},
	} {
		if got := gitsource.ShortCommit(c.in); got != c.want {
			t.Errorf("ShortCommit(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
