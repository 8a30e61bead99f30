package provision_test

import (
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// The Provisioner is what the reconciler needs of one. The assertion lives in
// a test because package provision cannot import sync: sync imports it.
var _ pipesync.Provisioner = (*provision.Provisioner)(nil)

// It also answers what validation asks EC2 about instance types.
var _ pipesync.InstanceTypes = (*provision.Provisioner)(nil)
