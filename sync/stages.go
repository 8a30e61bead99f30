package sync

import (
	"time"

	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// defaultRunTime bounds one run of an algorithm; the work queue's visibility
// timeout is set above it so a running file is not handed to a second task.
const defaultRunTime = 15 * time.Minute

// StageSpecs turns a valid workflow into the specs of its stages. Stage i of
// a sequence_run reads the bucket stage i-1 writes; the buckets between stages
// are cloudpipe's own, named by provision.IntermediateBucketName so they are
// the same on every pass and unique to the account and region.
func StageSpecs(w *workflow.Workflow, accountID, stateBucket string) []provision.StageSpec {
	n := len(w.Stages)
	specs := make([]provision.StageSpec, n)
	in := w.InputBucket
	for i, st := range w.Stages {
		out := w.OutputBucket
		last := i == n-1
		if !last {
			out = provision.IntermediateBucketName(w.Name, i, accountID, w.Region)
		}
		a := st.Algorithm
		place := st.Placement(w)
		ports := make([]provision.PortSpec, len(a.Port))
		for j, p := range a.Port {
			ports[j] = provision.PortSpec{Port: p.Port, Protocol: p.Protocol}
		}
		storage := 0
		if a.EphemeralStorageGiB != nil {
			storage = *a.EphemeralStorageGiB
		}
		specs[i] = provision.StageSpec{
			Workflow:      w.Name,
			Stage:         i,
			Region:        w.Region,
			AccountID:     accountID,
			StateBucket:   stateBucket,
			InputBucket:   in,
			OutputBucket:  out,
			InputOwned:    i > 0,
			OutputOwned:   !last,
			RetainBuckets: w.RetainsBuckets(),
			Algorithm: provision.AlgorithmSpec{
				Name:           a.Name,
				Image:          a.ContainerName,
				RunCommand:     a.RunCommand,
				InputFilePath:  a.InputFilePath,
				OutputFilePath: a.OutputFilePath,
				// The placement's size: on Fargate at least the instance
				// type's vCPUs and memory, and a valid Fargate size.
				CPU:                 place.VCPU,
				MemoryMiB:           place.MemoryMiB,
				Architecture:        place.Arch,
				Ports:               ports,
				EphemeralStorageGiB: storage,
				ExpectedRunTime:     defaultRunTime,
			},
			Variables:             st.Step.Variables,
			Secrets:               w.Secrets,
			TaskCredentialsSecret: w.TaskCredentialsSecret,
			KMSKeyARNs:            w.KMSKeyARNs,
			MaxTasks:              w.MaxTasks,
			Suspend:               w.Suspend,
			Batch:                 batchSpec(w, st),
		}
		in = out
	}
	return specs
}

// sameStage reports whether a recorded stage can be updated in place into the
// new spec. A stage whose region or buckets changed is replaced: its old
// notification, queue and function belong to the old buckets.
func sameStage(old, new provision.StageSpec) bool {
	return old.Stage == new.Stage && old.Region == new.Region &&
		old.InputBucket == new.InputBucket && old.OutputBucket == new.OutputBucket
}

// batchSpec is where a stage placed on AWS Batch runs; nil on Fargate.
// The compute environment is sized from the type's vCPUs, taken from
// workflow's table (a type only EC2 knew gives the job's vCPUs: Batch
// still launches one instance past maxvCpus to fit a job).
func batchSpec(w *workflow.Workflow, st workflow.Stage) *provision.BatchSpec {
	place := st.Placement(w)
	if place.Platform != workflow.PlatformBatch {
		return nil
	}
	vcpu := int(place.VCPU)
	if t, ok := workflow.KnownInstanceType(place.InstanceType); ok {
		vcpu = max(vcpu, t.VCPU)
	}
	return &provision.BatchSpec{
		InstanceType: place.InstanceType, Capacity: place.Capacity, InstanceVCPU: vcpu,
		GPUs: place.GPUs, GPU: place.GPUs > 0, Privileged: st.Algorithm.Privileged, KeyPair: w.KeyPair,
	}
}
