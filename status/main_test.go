package status_test

import (
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

func TestMain(m *testing.M) {
	defer testenv.StopServers() // stops the Gitea the tests share
	m.Run()
}
