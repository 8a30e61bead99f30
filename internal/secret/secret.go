// Package secret holds credentials (the GitHub token, the webhook secret,
// Git passwords) so that they cannot be printed, logged or encoded by
// accident: only Reveal gives the value, and it is called only where the
// value is sent.
package secret

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// Redacted is what a Value shows in place of its value. Code that scrubs
// credentials out of other text uses it too, so a reader meets one marker.
const Redacted = "[redacted]"

// Value is a credential. Every fmt verb, slog, encoding/json and text
// encoders show "[redacted]"; so does an error that formats one. The zero
// value is the empty secret.
type Value struct {
	// A struct with an unexported field, not a string type: a conversion
	// such as string(v) or reflection-based encoding cannot expose it.
	value string
}

// New wraps a credential.
func New(value string) Value { return Value{value: value} }

// Reveal returns the credential. Call it only where the value is sent.
func (v Value) Reveal() string { return v.value }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.value == "" }

// String returns "[redacted]".
func (Value) String() string { return Redacted }

// GoString returns "[redacted]".
func (Value) GoString() string { return Redacted }

// Format formats "[redacted]" under the verb and flags given, so that no
// verb (not even %d or %x, which would otherwise print the field) shows the
// value.
func (Value) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), Redacted)
}

// LogValue returns "[redacted]", so that slog never records the value.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes the secret as the string "[redacted]".
func (Value) MarshalJSON() ([]byte, error) { return json.Marshal(Redacted) }

// MarshalText returns "[redacted]", for encoders that use text marshaling.
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
