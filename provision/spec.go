// Package provision creates and deletes the AWS resources of a pipeline stage,
// idempotently, and the shared prerequisites every stage uses (bootstrap).
// What was created is recorded by the caller in package inventory.
package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Tag keys carried by every resource cloudpipe creates.
const (
	TagManaged  = "cloudpipe:managed"  // always "true"
	TagWorkflow = "cloudpipe:workflow" // the workflow name
	TagStage    = "cloudpipe:stage"    // the stage index, "0", "1", ...
)

// StageSpec is everything needed to build one stage of a pipeline. It is built
// by package sync from a validated workflow; provision knows nothing of JSON.
type StageSpec struct {
	Workflow  string // workflow name: lowercase letters, digits, hyphens, <= 32 chars
	Stage     int    // 0-based index in process.algorithms
	Region    string // AWS region of the workflow
	AccountID string // account the agent runs in (from STS)
	// StateBucket is the agent's state bucket, kept in the stage's inventory
	// record. The bucket the runner records runs in (and the task role may
	// write) is Options.StateBucket, which is what provision uses.
	StateBucket string

	InputBucket  string // bucket the stage reads from and is triggered by (user-named, or intermediate)
	OutputBucket string // bucket the stage writes to
	// InputOwned / OutputOwned say the bucket is cloudpipe's own (an intermediate
	// bucket of a sequence_run, named by IntermediateBucketName): it must carry
	// our tags if it exists. A user-named bucket is created (and tagged) when
	// missing, but a pre-existing user bucket is used as it is and never deleted.
	InputOwned, OutputOwned bool
	RetainBuckets           bool // keep buckets on delete even when empty (default true)

	Algorithm AlgorithmSpec
	Variables map[string]string // literal env values for the algorithm container
	Secrets   map[string]string // env name -> Secrets Manager ARN (optionally with :jsonkey::)
	// TaskCredentialsSecret, when set, is a secret holding AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, mapped into the container by valueFrom.
	TaskCredentialsSecret string
	// KMSKeyARNs are customer managed KMS keys (key ARNs) the task role may
	// use through S3 and Secrets Manager besides those EnsureStage finds on
	// the buckets and secrets: the workflow's kms_key_arns.
	KMSKeyARNs []string `json:",omitempty"`
	MaxTasks   int      // most tasks running at once for this stage; 0 = DefaultMaxTasks
	Suspend    bool     // notification removed: uploads are not processed
	// Batch places the stage on AWS Batch (workflow.Placement's
	// PlatformBatch); nil runs it on Fargate.
	Batch *BatchSpec `json:",omitempty"`
}

// BatchSpec is where a stage placed on AWS Batch runs: the compute
// environment and job queue of its region, instance type and capacity,
// shared by every stage that uses them (BatchCapacity), and what its job
// definition asks of an instance.
type BatchSpec struct {
	InstanceType string // "g5.xlarge"
	Capacity     string // "ec2" or "spot"
	// InstanceVCPU is the type's vCPU count, for the compute environment's
	// maxvCpus; 0 when unknown (then the job's vCPUs).
	InstanceVCPU int
	GPUs         int    // the job's GPUs: every GPU of the type
	GPU          bool   // the type is a GPU family: the GPU-enabled ECS AMI
	Privileged   bool   // the algorithm's containers run privileged
	KeyPair      string // EC2 key pair of the instances (SSH), "" for none; part of the capacity
}

// Key is the shared capacity the stage uses, in region.
func (b BatchSpec) Key(region string) BatchCapacity {
	return BatchCapacity{Region: region, InstanceType: b.InstanceType, Capacity: b.Capacity, KeyPair: b.KeyPair}
}

// BatchCapacity names one compute environment and its job queue: one per
// region, instance type and capacity, whatever the stages using them.
type BatchCapacity struct {
	Region       string `json:"region"`
	InstanceType string `json:"instance_type"`
	Capacity     string `json:"capacity"` // "ec2" or "spot"
	// KeyPair is the EC2 key pair the instances accept SSH with (the
	// workflow's key_pair): a compute environment has one, so workflows
	// with different key pairs do not share one.
	KeyPair string `json:"key_pair,omitempty"`
}

// Name is the compute environment's and the job queue's name,
// cp-batch-<type with dots as hyphens>-<capacity>: "cp-batch-g5-xlarge-spot",
// then, with a key pair, "-k" and 8 hex digits of its SHA-256 (key pair
// names may hold characters Batch names may not).
// Batch names take letters, numbers, hyphens and underscores, up to 128:
// https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateComputeEnvironment.html
func (k BatchCapacity) Name() string {
	name := "cp-batch-" + strings.ReplaceAll(k.InstanceType, ".", "-") + "-" + k.Capacity
	if k.KeyPair != "" {
		sum := sha256.Sum256([]byte(k.KeyPair))
		name += "-k" + hex.EncodeToString(sum[:4])
	}
	return name
}

// String is the capacity as reports name it: "eu-west-1/g5.xlarge/spot".
func (k BatchCapacity) String() string {
	s := k.Region + "/" + k.InstanceType + "/" + k.Capacity
	if k.KeyPair != "" {
		s += "/key " + k.KeyPair
	}
	return s
}

// AlgorithmSpec is the container side of a stage.
type AlgorithmSpec struct {
	Name           string
	Image          string // container_name
	RunCommand     string // with $input / $output
	InputFilePath  string
	OutputFilePath string
	CPU            float64 // vCPUs (below 64) or CPU units: the stage's placement, at least the algorithm's CPU
	MemoryMiB      int     // the placement's memory, at least memory.suggested
	// Architecture is the processor the containers run on: "" or "x86_64"
	// (Fargate's default), or "arm64" (Graviton), as the algorithm's
	// instance type has it.
	Architecture string
	Ports        []PortSpec
	// EphemeralStorageGiB is the task's ephemeral storage (21 to 200, as
	// the algorithm file was validated); 0 leaves Fargate's 20 GiB.
	EphemeralStorageGiB int
	// ExpectedRunTime bounds one run; the queue's visibility timeout is set above it.
	ExpectedRunTime time.Duration
}

// PortSpec is a container port.
type PortSpec struct {
	Port     int
	Protocol string // "tcp" or "udp"
}

// DefaultMaxTasks is the running-task cap of a stage whose workflow sets none.
const DefaultMaxTasks = 10
