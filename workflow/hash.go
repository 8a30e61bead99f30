package workflow

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// specHashVersion starts every hashed encoding. Change it when the encoding
// changes meaning, so every deployed workflow is updated once rather than
// silently compared against an incompatible hash.
const specHashVersion = "cloudpipe-spec-v1\n"

// specHash returns the hex SHA-256 of w's content and the content of the
// algorithm of every stage, in stage order. The encoding is encoding/json's
// of the decoded values, which is canonical for our types: struct fields in
// declaration order, map keys sorted, no insignificant white space. So the
// hash ignores how the file is laid out, but changes when any setting of the
// workflow or of an algorithm it uses does. Name and File are not encoded
// (json:"-"): they are identity and location, not content.
func specHash(w *Workflow) string {
	c := *w
	if c.RetainsBuckets() {
		// Absent and true mean the same; hash them the same, so writing
		// out the default does not redeploy.
		c.RetainBuckets = nil
	}
	h := sha256.New()
	h.Write([]byte(specHashVersion))
	enc := json.NewEncoder(h) // each Encode ends with '\n', which separates the parts
	// Encoding our own decoded types cannot fail: no channels, funcs or
	// cyclic values, and every float came from a finite JSON number.
	_ = enc.Encode(&c)
	for _, s := range w.Stages {
		_ = enc.Encode(s.Algorithm)
	}
	return hex.EncodeToString(h.Sum(nil))
}
