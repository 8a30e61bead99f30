package provision_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudpipe/cloudpipe/provision"
)

// TestLambdaCodeFromFile checks that the package is built when asked for,
// held until Release, and built again afterwards. The file is changed
// between calls so that a rebuild shows in the bytes.
func TestLambdaCodeFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("version 1")
	code := provision.LambdaCodeFromFile(path, "")

	sum1, err := code.SHA256()
	if err != nil {
		t.Fatal(err)
	}
	want1, err := provision.LambdaZipFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write("version 2")
	zip, err := code.Zip()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(zip, want1) {
		t.Error("Zip after SHA256 built the package again instead of using the one hashed")
	}

	code.Release()
	if sum, err := code.SHA256(); err != nil || sum != sum1 {
		t.Errorf("SHA256 after Release = %q, %v; want the kept %q", sum, err, sum1)
	}
	zip, err = code.Zip()
	if err != nil {
		t.Fatal(err)
	}
	want2, err := provision.LambdaZipFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(zip, want2) {
		t.Error("Zip after Release returned the dropped package")
	}
	if sum, _ := code.SHA256(); sum == sum1 {
		t.Error("SHA256 still names the dropped package after a rebuild")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	code.Release()
	if _, err := code.Zip(); err == nil {
		t.Error("Zip of a missing file succeeded")
	}
	if _, err := provision.LambdaCodeFromFile(path, "").SHA256(); err == nil {
		t.Error("SHA256 of a missing file succeeded")
	}
	if _, err := provision.LambdaCodeFromFile(path, "").ObjectKey(); err == nil {
		t.Error("ObjectKey of a missing file succeeded")
	}
}

// TestLambdaCodeObjectKey: the object is named by what the package is made
// from, known without building it.
func TestLambdaCodeObjectKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(path, []byte("abc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	zip := []byte("PK fixed package")
	sum := sha256.Sum256(zip)
	for _, tt := range []struct {
		name string
		code *provision.LambdaCode
		want string
	}{
		{"file, hashed here", provision.LambdaCodeFromFile(path, ""), "lambda/" + abc + ".zip"},
		{"file, hash given", provision.LambdaCodeFromFile(path, "given"), "lambda/given.zip"},
		{"fixed bytes", provision.NewLambdaCode(zip), "lambda/" + hex.EncodeToString(sum[:]) + ".zip"},
	} {
		if got, err := tt.code.ObjectKey(); err != nil || got != tt.want {
			t.Errorf("%s: ObjectKey = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestNewLambdaCodeKeepsItsBytes(t *testing.T) {
	want := []byte("PK fixed package")
	code := provision.NewLambdaCode(want)
	code.Release()
	got, err := code.Zip()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("Zip after Release = %q, %v; want %q", got, err, want)
	}
}

func TestFileSHA256(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(path, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got, err := provision.FileSHA256(path); err != nil || got != want {
		t.Errorf("FileSHA256 = %s, %v; want %s", got, err, want)
	}
	if _, err := provision.FileSHA256(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FileSHA256 of a missing file: err = %v, want fs.ErrNotExist", err)
	}
}
