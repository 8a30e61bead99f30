package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// LambdaCode is the deployment package of every stage function. The agent's
// package is its own executable, zipped: several MiB that only a pass
// creating a function or replacing its code needs. So the package is built
// when first asked for and dropped by Release, and an idle agent holds only
// its hash.
type LambdaCode struct {
	build func() ([]byte, error)

	mu     sync.Mutex
	zip    []byte // nil until built, and again after Release
	sha256 string // Lambda's CodeSha256 of the package; kept across Release
}

// NewLambdaCode returns a LambdaCode holding zip for good; Release is a
// no-op on it.
func NewLambdaCode(zip []byte) *LambdaCode {
	return &LambdaCode{build: func() ([]byte, error) { return zip, nil }, zip: zip, sha256: codeSHA256(zip)}
}

// LambdaCodeFromFile returns a LambdaCode that zips the file at path (see
// LambdaZipFromFile) whenever it is needed after a Release. The zip carries
// no timestamps, so every build gives the same bytes and the same hash as
// long as the file is unchanged, which holds for a running executable.
func LambdaCodeFromFile(path string) *LambdaCode {
	return &LambdaCode{build: func() ([]byte, error) { return LambdaZipFromFile(path) }}
}

// Zip returns the package, building it if it is not held.
func (c *LambdaCode) Zip() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zip != nil {
		return c.zip, nil
	}
	zip, err := c.build()
	if err != nil {
		return nil, err
	}
	if len(zip) == 0 {
		return nil, fmt.Errorf("lambda code: empty deployment package")
	}
	c.zip = zip
	c.sha256 = codeSHA256(zip)
	return zip, nil
}

// SHA256 returns the package's hash as Lambda reports it (CodeSha256),
// building the package the first time.
func (c *LambdaCode) SHA256() (string, error) {
	c.mu.Lock()
	sum := c.sha256
	c.mu.Unlock()
	if sum != "" {
		return sum, nil
	}
	if _, err := c.Zip(); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sha256, nil
}

// Release drops the built package; the next Zip builds it again. Requests
// already holding it keep their copy. Call it when a pass is over.
func (c *LambdaCode) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.zip = nil
}

// FileSHA256 returns the SHA-256 of the file at path, in hex. The agent
// names its release by the hash of its own executable, the stage functions'
// code, and the demo caches that code's zip under it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
