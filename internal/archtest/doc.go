// Package archtest holds the tests that keep cloudpipe's package structure as
// docs/design.md describes it. It has no code of its own.
package archtest
