package provision

import (
	"errors"
	"fmt"
)

// Errors returned by provision, translated from AWS errors at this boundary so
// callers use errors.Is and never match AWS codes or messages.
var (
	// ErrNotFound: the resource does not exist.
	ErrNotFound = errors.New("not found")
)

// NotOwnedError reports a resource with one of cloudpipe's names that does not
// carry cloudpipe's tags. cloudpipe never changes, adopts or deletes it.
type NotOwnedError struct {
	Kind string // "sqs queue", "iam role", ...
	Name string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("%s %s exists but was not created by cloudpipe (no %s=true tag): rename or remove it, cloudpipe will not touch it", e.Kind, e.Name, TagManaged)
}

// ErrNotOwned matches any *NotOwnedError with errors.Is.
var ErrNotOwned = errors.New("not owned by cloudpipe")

// Is makes errors.Is(err, ErrNotOwned) true for a *NotOwnedError.
func (e *NotOwnedError) Is(target error) bool { return target == ErrNotOwned }
