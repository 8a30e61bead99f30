package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
)

// AWS Batch capacity: one managed compute environment and one job queue on
// it per region, instance type and capacity (BatchCapacity), shared by
// every stage placed there. Each stage only submits to the queue with its
// own job definition; which stages use a capacity is the caller's to count
// (package sync keeps it in the inventory's index), and DeleteBatchCapacity
// is called once none does.

// Kinds of the shared Batch resources, as reports name them.
const (
	kindComputeEnvironment = "batch compute environment"
	kindJobQueue           = "batch job queue"
)

// TagCapacity marks a compute environment and job queue with the capacity
// they serve (BatchCapacity.String); with TagManaged it is what makes them
// cloudpipe's.
const TagCapacity = "cloudpipe:batch-capacity"

// BatchInstanceRole is the role and instance profile bootstrap makes for
// the EC2 instances of every compute environment (ECS's container-instance
// role: registering with ECS, pulling images, writing logs).
// https://docs.aws.amazon.com/batch/latest/userguide/instance_IAM_role.html
const BatchInstanceRole = "cp-batch-instance"

// batchMaxvCPUCap bounds a compute environment's maxvCpus whatever its type:
// a runaway queue costs at most this many vCPUs of instances at once.
const batchMaxvCPUCap = 1024

// batchSettleTimeout bounds how long a call waits for a compute
// environment or job queue to leave CREATING, UPDATING or DELETING; Batch
// makes those changes asynchronously, usually within a minute.
const batchSettleTimeout = 5 * time.Minute

// Image types of a compute environment's instances: the ECS-optimized
// Amazon Linux 2023 AMI, or for GPU families the Amazon Linux 2 AMI with
// NVIDIA's drivers and container runtime (AL2023 has no GPU variant for
// Batch). "ECS_AL2_NVIDIA: Amazon Linux 2 (GPU): Default for all GPU
// instance families"; "ECS_AL2023: Amazon Linux 2023".
// https://docs.aws.amazon.com/batch/latest/APIReference/API_Ec2Configuration.html
const (
	imageTypeGPU     = "ECS_AL2_NVIDIA"
	imageTypeDefault = "ECS_AL2023"
)

// capacityTags are the tags of a capacity's compute environment and queue.
func capacityTags(k BatchCapacity) map[string]string {
	return map[string]string{TagManaged: "true", TagCapacity: k.String()}
}

// ownsCapacity reports whether tags mark a resource as cloudpipe's for k.
func ownsCapacity(tags map[string]string, k BatchCapacity) bool {
	return tags[TagManaged] == "true" && tags[TagCapacity] == k.String()
}

// computeEnvironmentInput is the CreateComputeEnvironment request of a
// capacity: a managed EC2 or Spot environment of the one instance type,
// scaling from 0 vCPUs (nothing runs and nothing is billed while no job
// waits) to room for DefaultMaxTasks jobs of the type, in the region's
// network from bootstrap, its instances with bootstrap's instance profile,
// and Batch's service-linked role (no serviceRole). Spot asks for the
// price-capacity-optimized allocation, which needs no Spot fleet role and
// picks the pools least likely to be interrupted at the lowest price; EC2
// on-demand takes BEST_FIT_PROGRESSIVE.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ComputeResource.html
// https://docs.aws.amazon.com/batch/latest/userguide/allocation-strategies.html
func computeEnvironmentInput(k BatchCapacity, b BatchSpec, net Network) *batch.CreateComputeEnvironmentInput {
	vcpu := max(b.InstanceVCPU, 1)
	cr := &batchtypes.ComputeResource{
		Type:               batchtypes.CRTypeEc2,
		AllocationStrategy: batchtypes.CRAllocationStrategyBestFitProgressive,
		MinvCpus:           aws.Int32(0),
		MaxvCpus:           aws.Int32(int32(min(vcpu*DefaultMaxTasks, batchMaxvCPUCap))),
		InstanceTypes:      []string{k.InstanceType},
		Subnets:            net.Subnets,
		SecurityGroupIds:   net.SecurityGroups,
		InstanceRole:       aws.String(BatchInstanceRole),
		Ec2Configuration:   []batchtypes.Ec2Configuration{{ImageType: aws.String(imageTypeDefault)}},
		Tags:               capacityTags(k),
	}
	if b.GPU {
		cr.Ec2Configuration[0].ImageType = aws.String(imageTypeGPU)
	}
	if k.KeyPair != "" {
		cr.Ec2KeyPair = aws.String(k.KeyPair)
	}
	if k.Capacity == "spot" {
		cr.Type, cr.AllocationStrategy = batchtypes.CRTypeSpot, batchtypes.CRAllocationStrategySpotPriceCapacityOptimized
	}
	return &batch.CreateComputeEnvironmentInput{
		ComputeEnvironmentName: aws.String(k.Name()),
		Type:                   batchtypes.CETypeManaged,
		State:                  batchtypes.CEStateEnabled,
		ComputeResources:       cr,
		Tags:                   capacityTags(k),
	}
}

// findComputeEnvironment describes the environment name; ErrNotFound when
// there is none (or it is gone: DELETED).
func findComputeEnvironment(ctx context.Context, c *clients, name string) (*batchtypes.ComputeEnvironmentDetail, error) {
	out, err := c.batch.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: []string{name}})
	if err != nil {
		return nil, fmt.Errorf("describe compute environment %s: %w", name, err)
	}
	for _, ce := range out.ComputeEnvironments {
		if aws.ToString(ce.ComputeEnvironmentName) == name && ce.Status != batchtypes.CEStatusDeleted {
			return &ce, nil
		}
	}
	return nil, fmt.Errorf("compute environment %s: %w", name, ErrNotFound)
}

// findJobQueue describes the job queue name; ErrNotFound when there is none.
func findJobQueue(ctx context.Context, c *clients, name string) (*batchtypes.JobQueueDetail, error) {
	out, err := c.batch.DescribeJobQueues(ctx, &batch.DescribeJobQueuesInput{JobQueues: []string{name}})
	if err != nil {
		return nil, fmt.Errorf("describe job queue %s: %w", name, err)
	}
	for _, q := range out.JobQueues {
		if aws.ToString(q.JobQueueName) == name && q.Status != batchtypes.JQStatusDeleted {
			return &q, nil
		}
	}
	return nil, fmt.Errorf("job queue %s: %w", name, ErrNotFound)
}

// ensureBatchCapacity makes sure the stage's compute environment and job
// queue exist, are ENABLED and VALID, and returns the queue's ARN. It
// creates what is missing, enables what a teardown left DISABLED (a new
// user came back before the last one's teardown finished) and waits out
// Batch's asynchronous changes up to batchSettleTimeout: a queue can only
// be created on a VALID environment. An environment or queue being deleted
// is an error for this pass; the next one creates it again.
func (p *Provisioner) ensureBatchCapacity(ctx context.Context, c *clients, spec StageSpec, net Network) (string, error) {
	k := spec.Batch.Key(spec.Region)
	name := k.Name()
	ce, err := p.settledComputeEnvironment(ctx, c, k)
	switch {
	case errors.Is(err, ErrNotFound):
		// Two stages on one capacity may both find it missing: the one that
		// loses the race finds it made.
		if _, err := c.batch.CreateComputeEnvironment(ctx, computeEnvironmentInput(k, *spec.Batch, net)); err != nil && !isBatchAlreadyExists(err) {
			return "", fmt.Errorf("create compute environment %s: %w", name, err)
		}
		if ce, err = p.settledComputeEnvironment(ctx, c, k); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	}
	if ce.State == batchtypes.CEStateDisabled {
		if _, err := c.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
			ComputeEnvironment: aws.String(name), State: batchtypes.CEStateEnabled}); err != nil {
			return "", fmt.Errorf("enable compute environment %s: %w", name, err)
		}
		if ce, err = p.settledComputeEnvironment(ctx, c, k); err != nil {
			return "", err
		}
	}
	if ce.Status != batchtypes.CEStatusValid {
		return "", fmt.Errorf("compute environment %s is %s: %s (bootstrap makes its instance profile %s: run agent bootstrap --region %s)",
			name, ce.Status, aws.ToString(ce.StatusReason), BatchInstanceRole, spec.Region)
	}
	q, err := p.settledJobQueue(ctx, c, k)
	switch {
	case errors.Is(err, ErrNotFound):
		if _, err := c.batch.CreateJobQueue(ctx, &batch.CreateJobQueueInput{
			JobQueueName: aws.String(name), Priority: aws.Int32(1), State: batchtypes.JQStateEnabled,
			ComputeEnvironmentOrder: []batchtypes.ComputeEnvironmentOrder{{Order: aws.Int32(1), ComputeEnvironment: ce.ComputeEnvironmentArn}},
			Tags:                    capacityTags(k),
		}); err != nil && !isBatchAlreadyExists(err) {
			return "", fmt.Errorf("create job queue %s: %w", name, err)
		}
		if q, err = p.settledJobQueue(ctx, c, k); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	}
	// A queue disabled, or given other compute environments, by hand is
	// put back: on the capacity's environment alone (capacityDrift).
	if q.State == batchtypes.JQStateDisabled || !slices.Equal(queueEnvironments(q), []string{name}) {
		if _, err := c.batch.UpdateJobQueue(ctx, &batch.UpdateJobQueueInput{JobQueue: aws.String(name), State: batchtypes.JQStateEnabled,
			ComputeEnvironmentOrder: []batchtypes.ComputeEnvironmentOrder{{Order: aws.Int32(1), ComputeEnvironment: ce.ComputeEnvironmentArn}}}); err != nil {
			return "", fmt.Errorf("enable job queue %s: %w", name, err)
		}
		if q, err = p.settledJobQueue(ctx, c, k); err != nil {
			return "", err
		}
	}
	return aws.ToString(q.JobQueueArn), nil
}

// settledComputeEnvironment returns k's environment once no change is
// under way; ErrNotFound when there is none; an error when it is not
// cloudpipe's, is being deleted or stays busy past batchSettleTimeout.
func (p *Provisioner) settledComputeEnvironment(ctx context.Context, c *clients, k BatchCapacity) (*batchtypes.ComputeEnvironmentDetail, error) {
	var ce *batchtypes.ComputeEnvironmentDetail
	err := p.waitBatch(ctx, func() (bool, error) {
		var err error
		if ce, err = findComputeEnvironment(ctx, c, k.Name()); err != nil {
			return true, err
		}
		if !ownsCapacity(ce.Tags, k) {
			return true, &NotOwnedError{Kind: kindComputeEnvironment, Name: k.Name()}
		}
		switch ce.Status {
		case batchtypes.CEStatusDeleting:
			return true, fmt.Errorf("compute environment %s: %w", k.Name(), errBatchDeleting)
		case batchtypes.CEStatusCreating, batchtypes.CEStatusUpdating:
			return false, nil
		}
		return true, nil
	})
	return ce, err
}

// settledJobQueue is settledComputeEnvironment for k's job queue.
func (p *Provisioner) settledJobQueue(ctx context.Context, c *clients, k BatchCapacity) (*batchtypes.JobQueueDetail, error) {
	var q *batchtypes.JobQueueDetail
	err := p.waitBatch(ctx, func() (bool, error) {
		var err error
		if q, err = findJobQueue(ctx, c, k.Name()); err != nil {
			return true, err
		}
		if !ownsCapacity(q.Tags, k) {
			return true, &NotOwnedError{Kind: kindJobQueue, Name: k.Name()}
		}
		switch q.Status {
		case batchtypes.JQStatusDeleting:
			return true, fmt.Errorf("job queue %s: %w", k.Name(), errBatchDeleting)
		case batchtypes.JQStatusCreating, batchtypes.JQStatusUpdating:
			return false, nil
		}
		return true, nil
	})
	return q, err
}

// waitBatch calls check until it reports done, sleeping between calls from
// 100 ms doubling to 5 s, for at most batchSettleTimeout.
func (p *Provisioner) waitBatch(ctx context.Context, check func() (bool, error)) error {
	deadline := time.Now().Add(batchSettleTimeout)
	for d := 100 * time.Millisecond; ; d = min(2*d, 5*time.Second) {
		done, err := check()
		if done || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("AWS Batch still busy after %v: %w", batchSettleTimeout, errBatchBusy)
		}
		if err := p.opts.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// errBatchBusy is a Batch resource still changing when a wait ran out;
// errBatchDeleting one being deleted, which a stage cannot use until it is
// gone and made again on a later pass.
var (
	errBatchBusy     = errors.New("change under way")
	errBatchDeleting = errors.New("being deleted: it is made again on a later pass")
)

// DeleteBatchCapacity tears down k's job queue, then its compute
// environment, each first DISABLED and then deleted, as Batch requires
// ("Before you can delete a compute environment, you must set its state
// to DISABLED ... and disassociate it from any job queues";
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeleteComputeEnvironment.html,
// and a queue must be DISABLED before DeleteJobQueue:
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeleteJobQueue.html).
// Each step is asynchronous on AWS; the call waits them out up to
// batchSettleTimeout each and returns done=false when one is still under
// way, for a later call to finish. Every step starts from what it finds,
// so a call after a crash anywhere in the teardown picks up where it
// stopped. Resources without cloudpipe's tags for k are left alone
// (an error matching ErrNotOwned). The caller calls it only once no stage
// uses k: jobs still queued are failed by Batch when their queue goes.
func (p *Provisioner) DeleteBatchCapacity(ctx context.Context, k BatchCapacity) (deleted []string, done bool, err error) {
	c := p.clients(k.Region)
	name := k.Name()
	q, err := p.settledJobQueue(ctx, c, k)
	switch {
	case errors.Is(err, errBatchBusy):
		return nil, false, nil
	case errors.Is(err, errBatchDeleting):
		// A crash after DeleteJobQueue: wait for it to go.
		if gone, err := p.waitGone(ctx, func() error { _, err := findJobQueue(ctx, c, name); return err }); !gone || err != nil {
			return nil, false, err
		}
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, false, err
	default:
		if q.State != batchtypes.JQStateDisabled {
			if _, err := c.batch.UpdateJobQueue(ctx, &batch.UpdateJobQueueInput{JobQueue: aws.String(name), State: batchtypes.JQStateDisabled}); err != nil {
				return nil, false, fmt.Errorf("disable job queue %s: %w", name, err)
			}
			if _, err := p.settledJobQueue(ctx, c, k); err != nil {
				return nil, false, ignoreBusy(err)
			}
		}
		if _, err := c.batch.DeleteJobQueue(ctx, &batch.DeleteJobQueueInput{JobQueue: aws.String(name)}); err != nil {
			return nil, false, fmt.Errorf("delete job queue %s: %w", name, err)
		}
		deleted = append(deleted, kindJobQueue+" "+name)
		if gone, err := p.waitGone(ctx, func() error { _, err := findJobQueue(ctx, c, name); return err }); !gone || err != nil {
			return deleted, false, err
		}
	}
	ce, err := p.settledComputeEnvironment(ctx, c, k)
	switch {
	case errors.Is(err, errBatchBusy):
		return deleted, false, nil
	case errors.Is(err, errBatchDeleting):
		gone, err := p.waitGone(ctx, func() error { _, err := findComputeEnvironment(ctx, c, name); return err })
		return deleted, gone, err
	case errors.Is(err, ErrNotFound):
		return deleted, true, nil
	case err != nil:
		return deleted, false, err
	}
	if ce.State != batchtypes.CEStateDisabled {
		if _, err := c.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
			ComputeEnvironment: aws.String(name), State: batchtypes.CEStateDisabled}); err != nil {
			return deleted, false, fmt.Errorf("disable compute environment %s: %w", name, err)
		}
		if _, err := p.settledComputeEnvironment(ctx, c, k); err != nil {
			return deleted, false, ignoreBusy(err)
		}
	}
	if _, err := c.batch.DeleteComputeEnvironment(ctx, &batch.DeleteComputeEnvironmentInput{ComputeEnvironment: aws.String(name)}); err != nil {
		return deleted, false, fmt.Errorf("delete compute environment %s: %w", name, err)
	}
	deleted = append(deleted, kindComputeEnvironment+" "+name)
	gone, err := p.waitGone(ctx, func() error { _, err := findComputeEnvironment(ctx, c, name); return err })
	return deleted, gone, err
}

// waitGone waits, as waitBatch, until find answers ErrNotFound; gone is
// false when the wait ran out first.
func (p *Provisioner) waitGone(ctx context.Context, find func() error) (gone bool, err error) {
	err = p.waitBatch(ctx, func() (bool, error) {
		err := find()
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		return false, err
	})
	if errors.Is(err, errBatchBusy) {
		return false, nil
	}
	return err == nil, err
}

// ignoreBusy turns a wait that ran out into no error: the teardown goes on
// in a later call.
func ignoreBusy(err error) error {
	if errors.Is(err, errBatchBusy) {
		return nil
	}
	return err
}
