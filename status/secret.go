package status

import (
	"encoding/json"
	"log/slog"
)

// redacted is what a Secret prints in place of its value.
const redacted = "[redacted]"

// Secret holds a credential, such as the GitHub token, so that it cannot be
// printed by accident: String, GoString, LogValue, MarshalJSON and
// MarshalText all give "[redacted]". Reveal returns the value and is called
// only where the value is used. The zero value is the empty secret.
type Secret struct {
	// A struct with an unexported field, not a string type: a conversion
	// such as string(s) or reflection-based encoding cannot expose it.
	value string
}

// NewSecret wraps a credential.
func NewSecret(value string) Secret { return Secret{value: value} }

// Reveal returns the credential. Call it only where the value is sent.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.value == "" }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", so that %#v does not print the value.
func (s Secret) GoString() string { return redacted }

// LogValue returns "[redacted]", so that slog never records the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the secret as the string "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalText returns "[redacted]", for encoders that use text marshaling.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
