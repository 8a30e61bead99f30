package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// LambdaCode is the deployment package of every stage function. The agent's
// package is its own executable, zipped: several MiB, and about a second of
// CPU to deflate. A release's package is stored once in the state bucket
// (see Provisioner.storeCode), under a key named by what it is made from,
// with its hash beside it; so an agent that finds it there never builds
// it. Otherwise it is built when first needed, held until Release, and
// built again only by a later pass that needs the bytes.
type LambdaCode struct {
	build  func() ([]byte, error)
	source func() (string, error) // hex SHA-256 of what the package is made from

	mu     sync.Mutex
	zip    []byte          // nil until built, and again after Release
	sha256 string          // Lambda's CodeSha256 of the package, once known; kept across Release
	name   string          // source's hash, once known
	stored map[string]bool // buckets found to hold the package since the last Release
	fixed  bool            // NewLambdaCode's: the bytes are kept, there is no file to build them from
}

// NewLambdaCode returns a LambdaCode holding zip for good; Release keeps it.
// Its object is named by the zip's own SHA-256.
func NewLambdaCode(zip []byte) *LambdaCode {
	sum := sha256.Sum256(zip)
	name := hex.EncodeToString(sum[:])
	return &LambdaCode{
		build:  func() ([]byte, error) { return zip, nil },
		source: func() (string, error) { return name, nil },
		zip:    zip, sha256: codeSHA256(zip), name: name, fixed: true,
	}
}

// LambdaCodeFromFile returns a LambdaCode that zips the file at path (see
// LambdaZipFromFile) whenever the bytes are needed after a Release. The
// zip carries no timestamps, so every build gives the same bytes and the
// same hash as long as the file is unchanged, which holds for a running
// executable. fileSHA256 is FileSHA256(path), which names the package's
// object: pass it when it is at hand (the agent names its release by it),
// or "" to hash the file when first needed.
func LambdaCodeFromFile(path, fileSHA256 string) *LambdaCode {
	return &LambdaCode{
		build:  func() ([]byte, error) { return LambdaZipFromFile(path) },
		source: func() (string, error) { return FileSHA256(path) },
		name:   fileSHA256,
	}
}

// Zip returns the package, building it if it is not held.
func (c *LambdaCode) Zip() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.zipLocked()
}

func (c *LambdaCode) zipLocked() ([]byte, error) {
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

// SHA256 returns the package's hash as Lambda reports it (CodeSha256):
// the one known from a build or from the stored object, else that of a
// package built now.
func (c *LambdaCode) SHA256() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sha256 != "" {
		return c.sha256, nil
	}
	if _, err := c.zipLocked(); err != nil {
		return "", err
	}
	return c.sha256, nil
}

// knownSHA256 is the package's CodeSha256 if known without work, else "".
func (c *LambdaCode) knownSHA256() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sha256
}

// ObjectKey is the key of the package's object in a state bucket:
// lambda/<hex SHA-256 of what it is made from>.zip, the agent's executable
// for LambdaCodeFromFile. It is known without building the package.
func (c *LambdaCode) ObjectKey() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.objectKeyLocked()
}

func (c *LambdaCode) objectKeyLocked() (string, error) {
	if c.name == "" {
		name, err := c.source()
		if err != nil {
			return "", fmt.Errorf("lambda code: %w", err)
		}
		c.name = name
	}
	return "lambda/" + c.name + ".zip", nil
}

// Release drops the built package, and forgets which buckets were found to
// hold it: the next pass that creates or updates a function checks its
// object again, and builds the package only if it needs the bytes.
// Requests already holding the package keep their copy. Call it when a
// pass is over.
func (c *LambdaCode) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.stored)
	if !c.fixed {
		c.zip = nil
	}
}

// codeStore is where a package's object lives: S3 in production.
type codeStore interface {
	// head returns the CodeSha256 stored with the object at key, or found
	// false when there is no such object (or one without its hash).
	head(ctx context.Context, key string) (sum string, found bool, err error)
	// put writes the package as the object at key, with its CodeSha256.
	put(ctx context.Context, key string, zip []byte, sum string) error
}

// store makes sure the store named bucket holds the package, once per
// bucket until Release, and returns the object's key and the package's
// CodeSha256: it looks the object up and, only if it is missing, builds
// the package and writes it. Concurrent callers wait for the first, so a
// pass applying many workflows at once stores the package once.
func (c *LambdaCode) store(ctx context.Context, bucket string, st codeStore) (key, sum string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, err = c.objectKeyLocked()
	if err != nil {
		return "", "", err
	}
	if c.stored[bucket] && c.sha256 != "" {
		return key, c.sha256, nil
	}
	sum, found, err := st.head(ctx, key)
	if err != nil {
		return "", "", err
	}
	if !found {
		zip, err := c.zipLocked()
		if err != nil {
			return "", "", err
		}
		sum = codeSHA256(zip)
		if err := st.put(ctx, key, zip, sum); err != nil {
			return "", "", err
		}
	}
	if c.stored == nil {
		c.stored = map[string]bool{}
	}
	c.stored[bucket] = true
	c.sha256 = sum
	return key, sum, nil
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
