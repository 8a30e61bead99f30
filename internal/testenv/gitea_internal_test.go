package testenv

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRunGiteaPortTaken checks that a port held by another HTTP server is
// recognised, rather than that server taken for Gitea: Gitea logs the bind
// error and keeps running, and the squatter answers /api/v1/version.
func TestRunGiteaPortTaken(t *testing.T) {
	bin, skip, err := giteaBinary()
	if skip != "" {
		t.Skip(skip)
	}
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	squatter := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go squatter.Serve(l)
	defer squatter.Close()

	dir := t.TempDir()
	start := time.Now()
	_, _, err = runGitea(bin, filepath.Dir(bin), dir, l.Addr().(*net.TCPAddr).Port)
	if !errors.Is(err, errPortTaken) {
		t.Errorf("runGitea on a taken port: %v, want errPortTaken", err)
	}
	if d := time.Since(start); d > 45*time.Second {
		t.Errorf("runGitea took %v to notice", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.log")); err != nil {
		t.Errorf("no web.log: %v", err)
	}
}

func TestRemoveStaleGiteaDirs(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(pid int) string {
		dir, err := os.MkdirTemp("", giteaDirPrefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stale, live := mk(dead.Process.Pid), mk(os.Getpid())
	removeStaleGiteaDirs()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the directory of a dead test binary is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the directory of a live test binary was removed: %v", err)
	}
}
