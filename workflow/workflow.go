// Package workflow is cloudpipe's domain core: the model of workflow and
// algorithm files in the original cloud_pipe formats, their strict parsing and
// validation, and the spec hash that tells whether a deployed pipeline is current.
//
// Load reads a whole config repository and returns the valid workflows together
// with every problem found; ParseWorkflow and ParseAlgorithm check one file.
// Problems print in the CLI contract's format
// (file:line:col: json.path: message) and say what to change.
package workflow

import (
	"bytes"
	"encoding/json"
)

// Process types.
const (
	SingleRun   = "single_run"
	SequenceRun = "sequence_run"
)

// Workflow is one workflows/<name>.json file. Field names follow the original
// cloud_pipe format; the optional fields after Process are cloudpipe additions.
type Workflow struct {
	Name string `json:"-"` // the file's base name without .json: the pipeline's identity
	File string `json:"-"` // repository-relative path, e.g. workflows/foo.json

	InputBucket  string  `json:"input_s3_name"`
	OutputBucket string  `json:"output_s3_name"`
	KeyPair      string  `json:"key_pair,omitempty"` // accepted; for SSH to AWS Batch workers, unused on Fargate
	AccountID    string  `json:"account_id,omitempty"`
	Region       string  `json:"region"`
	Process      Process `json:"process"`

	Secrets               map[string]string `json:"secrets,omitempty"`                 // env name -> Secrets Manager ARN
	TaskCredentialsSecret string            `json:"task_credentials_secret,omitempty"` // secret ARN holding AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
	RetainBuckets         *bool             `json:"retain_buckets,omitempty"`          // default true
	MaxTasks              int               `json:"max_tasks,omitempty"`               // 0: default
	Suspend               bool              `json:"suspend,omitempty"`
	// KMSKeyARNs are further customer managed KMS keys the stages' task
	// roles may use through S3 and Secrets Manager, beyond the keys the
	// agent finds on the buckets and secrets themselves (an input object
	// put with a key of its own, a secret the algorithm reads itself).
	KMSKeyARNs []string `json:"kms_key_arns,omitempty"`
	// Capacity is where the workflow's stages run unless a step says
	// otherwise: CapacityFargate, CapacityEC2 or CapacitySpot; "" lets each
	// stage's placement decide (see Stage.Placement).
	Capacity string `json:"capacity,omitempty"`

	// Stages are the resolved steps, one per process.algorithms entry, in
	// order. Load fills them for valid workflows only.
	Stages []Stage `json:"-"`
	// SpecHash is the hex SHA-256 of the workflow's content and the content
	// of every algorithm it uses (see hash.go). Load fills it for valid
	// workflows only; sync compares it with the deployed hash to decide on an
	// update, so it ignores file layout (whitespace, key order) and paths.
	SpecHash string `json:"-"`
	// Notes are the notes that change what this workflow's pipeline does
	// compared with the original cloud_pipe: its own (a variable that
	// replaces the runtime's value) and those of the algorithms it uses (the
	// access-key variables a wrap file declared, dropped unless the workflow
	// maps them from a secret). Load fills them for valid workflows; plans
	// show them. Every note of every file, these included, is in
	// Config.Notes.
	Notes Problems `json:"-"`
}

// RetainsBuckets reports whether the workflow's buckets are kept when the
// workflow is deleted. Absent means true: deleting data is never a default.
func (w *Workflow) RetainsBuckets() bool {
	return w.RetainBuckets == nil || *w.RetainBuckets
}

// Process is the "process" object of a workflow.
type Process struct {
	Type       string `json:"type"`
	Algorithms []Step `json:"algorithms"`
}

// Step is one entry of process.algorithms: which algorithm runs at this stage
// and with which settings.
type Step struct {
	Name string `json:"name"`
	// Port lists the algorithm ports this step uses. The file may give plain
	// numbers ([9090]) or {port, protocol} objects; the protocol defaults to
	// tcp, so after parsing every entry has one.
	Port      []Port            `json:"port,omitempty"`
	Variables map[string]string `json:"variables,omitempty"`
	// Capacity overrides the workflow's capacity for this stage.
	Capacity string `json:"capacity,omitempty"`
}

// Stage is one resolved step of a valid workflow.
type Stage struct {
	Index     int        // 0-based position in process.algorithms
	Step      Step       // the step as written (ports normalized)
	Algorithm *Algorithm // the algorithm the step names; never nil
}

// Algorithm is one algorithms/<name>.json file, the original `wrap` format.
type Algorithm struct {
	File string `json:"-"` // repository-relative path

	ContainerName                     string   `json:"container_name"`
	System                            string   `json:"system,omitempty"`
	InputFilePath                     string   `json:"input_file_path"`
	OutputFilePath                    string   `json:"output_file_path"`
	ExecutablePath                    string   `json:"executable_path,omitempty"`
	RunCommand                        string   `json:"run_command"`
	Name                              string   `json:"name"`
	InstanceType                      string   `json:"instance_type,omitempty"` // where the stage runs: see Stage.Placement
	Memory                            Memory   `json:"memory"`
	CPU                               VCPU     `json:"CPU"`
	UserSpecifiedEnvironmentVariables []EnvVar `json:"user_specified_environment_variables,omitempty"`
	Port                              []Port   `json:"port,omitempty"`
	// EphemeralStorageGiB, a cloudpipe addition, is the task's ephemeral
	// storage in GiB (21 to 200); nil leaves Fargate's default of 20 GiB.
	// A pointer, so that a written 0 is reported rather than read as absent.
	EphemeralStorageGiB *int `json:"ephemeral_storage_gib,omitempty"`

	// credentialNote is the note that the access-key variables it declared
	// are dropped, if it has one: Load adds it to the Notes of each workflow
	// that does not map them from a secret.
	credentialNote *Problem

	// Privileged runs the container with extended privileges, which only an
	// EC2 instance (AWS Batch) allows: Fargate refuses privileged containers.
	Privileged bool `json:"privileged,omitempty"`

	// itype is InstanceType's figures, found by validation (in the table or
	// through LoadOptions.InstanceTypes); nil when InstanceType is empty or
	// the algorithm was not loaded.
	itype *InstanceType
}

// VCPU is an algorithm's CPU need: a number of vCPUs, or of ECS CPU units
// from 64 on (docs/workflow-reference.md, "Task size"). Validation puts
// DefaultCPU in place of an unset one.
type VCPU float64

// DefaultCPU is the CPU of an algorithm that does not set it: the default of
// the original `wrap` command's questions.
const DefaultCPU VCPU = 1

// UnmarshalJSON reads a number, or {}, which the original project's own
// example algorithm wrote for "not set": it reads as 0, which validation
// replaces with DefaultCPU and a note. The schema pass refuses every other
// object before decoding.
func (c *VCPU) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		*c = 0
		return nil
	}
	var f float64
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*c = VCPU(f)
	return nil
}

// Memory is an algorithm's memory need in MiB.
type Memory struct {
	Minimal   int `json:"minimal"`
	Suggested int `json:"suggested"`
}

// EnvVar declares a variable an algorithm reads.
type EnvVar struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
}

// Port is a container port.
type Port struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// UnmarshalJSON accepts a bare number (9090) as well as the object form
// ({"port": 9090, "protocol": "tcp"}), because workflow steps have been
// written both ways. Which form a file may use is enforced by the schema pass
// (check.go, schema.go) before decoding, with positions; this only converts.
func (p *Port) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil // encoding/json convention: null leaves the value alone
	}
	if len(data) > 0 && data[0] != '{' {
		var n int
		if err := json.Unmarshal(data, &n); err != nil {
			return err
		}
		*p = Port{Port: n}
		return nil
	}
	// Unknown fields are not refused here: the schema pass has reported
	// them with a position already, and decoding must go on so the rest of
	// the file can still be checked.
	type plain Port // no UnmarshalJSON method, so no recursion
	var v plain
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*p = Port(v)
	return nil
}
