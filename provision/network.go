package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// networkKey is where Bootstrap stores the Network of the agent's region in
// the state bucket, so every later pass and every stage function uses the
// same one (NetworkKey names those of other regions).
const networkKey = "config/network.json"

// tasksSecurityGroup is the security group Bootstrap creates in the default
// VPC when none is given: no ingress, AWS's default allow-all egress (to
// pull images and reach S3 and SQS).
const tasksSecurityGroup = "cloudpipe-tasks"

// ErrNoNetwork is returned by Bootstrap when no subnets are given and the
// region has no default VPC to take them from.
var ErrNoNetwork = errors.New("no default VPC: pass --subnets and --security-groups (or CLOUDPIPE_SUBNETS and CLOUDPIPE_SECURITY_GROUPS)")

// BootstrapOptions say what Bootstrap sets up.
type BootstrapOptions struct {
	StateBucket string // required
	Cluster     string // default Options.Cluster
	// Subnets and SecurityGroups are used as given. Without subnets the
	// default VPC's subnets are used; without security groups
	// "cloudpipe-tasks" is created (or found) in the subnets' VPC.
	Subnets, SecurityGroups []string
}

// BootstrapResult reports what Bootstrap found and what it created or
// changed ("<kind> <name>").
type BootstrapResult struct {
	StateBucket string
	ClusterARN  string
	Network     Network
	Created     []string
	Updated     []string
	Found       []string
}

// Bootstrap creates the prerequisites shared by every pipeline of a region,
// idempotently, tagged cloudpipe:managed=true: the state bucket
// (versioning, default encryption, public access blocked, lifecycle rules)
// in the agent's region (the config's), ECS's and AWS Batch's
// service-linked roles and the instance role and profile of Batch's
// compute environments in the account, and in region the ECS cluster and the network tasks run in,
// which it stores in the state bucket (see NetworkKey). An
// existing state bucket without our tags is used as it is. It fails with
// an error matching ErrNoNetwork when no subnets are given and the region
// has no default VPC.
func (p *Provisioner) Bootstrap(ctx context.Context, region string, o BootstrapOptions) (BootstrapResult, error) {
	if o.StateBucket == "" {
		return BootstrapResult{}, errors.New("bootstrap: state bucket is required")
	}
	if o.Cluster == "" {
		o.Cluster = p.opts.Cluster
	}
	c, home := p.clients(region), p.clients("")
	r := BootstrapResult{StateBucket: o.StateBucket}
	tags := map[string]string{TagManaged: "true"}

	if err := ensureStateBucket(ctx, home, o.StateBucket, tags, &r); err != nil {
		return r, err
	}
	// Before the cluster: ECS needs the role to start any task in it.
	if err := ensureServiceLinkedRole(ctx, home, ecsServiceLinkedRole, &r); err != nil {
		return r, err
	}
	// What stages on AWS Batch need of the account: Batch's service-linked
	// role and the compute environments' instance role and profile.
	if err := ensureServiceLinkedRole(ctx, home, batchServiceLinkedRole, &r); err != nil {
		return r, err
	}
	if err := ensureBatchInstanceRole(ctx, home, &r); err != nil {
		return r, err
	}
	if err := ensureCluster(ctx, c, o.Cluster, tags, &r); err != nil {
		return r, err
	}
	net, err := resolveNetwork(ctx, c, o, tags, &r)
	if err != nil {
		return r, err
	}
	r.Network = net
	if err := storeNetwork(ctx, home, o.StateBucket, p.NetworkKey(region), net, &r); err != nil {
		return r, err
	}
	return r, nil
}

func ensureStateBucket(ctx context.Context, c *clients, bucket string, tags map[string]string, r *BootstrapResult) error {
	what := "s3 bucket " + bucket
	have, err := findBucketTags(ctx, c, bucket)
	if errors.Is(err, ErrNotFound) {
		existed, cerr := createBucket(ctx, c, bucket, tags)
		if cerr != nil {
			return cerr
		}
		if existed {
			have, err = findBucketTags(ctx, c, bucket)
		}
	}
	switch {
	case errors.Is(err, ErrNotFound):
		r.Created = append(r.Created, what)
	case err != nil:
		return err
	case have[TagManaged] != "true":
		// An administrator's own bucket, named with --state-bucket: used,
		// never changed.
		r.Found = append(r.Found, what+" (not created by cloudpipe: settings left as they are)")
		return nil
	default:
		if err := ensureBucketProtection(ctx, c, bucket); err != nil {
			return err
		}
		r.Found = append(r.Found, what)
	}
	// Versioning keeps every inventory revision, so a bad write can be
	// undone by hand.
	v, err := c.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &bucket})
	if err != nil {
		return fmt.Errorf("get bucket versioning %s: %w", bucket, err)
	}
	if v.Status != s3types.BucketVersioningStatusEnabled {
		_, err := c.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket:                  &bucket,
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
		})
		if err != nil {
			return fmt.Errorf("put bucket versioning %s: %w", bucket, err)
		}
	}
	// Run records and old inventory versions would otherwise pile up for
	// ever; lifecycle rules of the administrator's own are kept.
	change, err := ensureLifecycle(ctx, c, bucket, stateBucketLifecycleRules())
	if err != nil {
		return err
	}
	lc := fmt.Sprintf("s3 lifecycle rules of %s (incomplete uploads aborted after %d days, run records expired after %d, old inventory versions after %d)",
		bucket, AbortIncompleteUploadsAfterDays, RunRecordsExpireAfterDays, InventoryVersionsExpireAfterDays)
	switch change {
	case lifecycleCreated:
		r.Created = append(r.Created, lc)
	case lifecycleUpdated:
		r.Updated = append(r.Updated, lc)
	default:
		r.Found = append(r.Found, lc)
	}
	return nil
}

// ensureCluster creates the ECS cluster unless it is active. An existing
// cluster is used whoever made it: clusters are commonly shared.
func ensureCluster(ctx context.Context, c *clients, name string, tags map[string]string, r *BootstrapResult) error {
	out, err := c.ecs.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{name}})
	if err != nil {
		return fmt.Errorf("describe clusters %s: %w", name, err)
	}
	for _, cl := range out.Clusters {
		if aws.ToString(cl.ClusterName) == name && aws.ToString(cl.Status) == "ACTIVE" {
			r.ClusterARN = aws.ToString(cl.ClusterArn)
			r.Found = append(r.Found, "ecs cluster "+name)
			return nil
		}
	}
	created, err := c.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: &name, Tags: ecsTags(tags)})
	if err != nil {
		return fmt.Errorf("create cluster %s: %w", name, err)
	}
	r.ClusterARN = aws.ToString(created.Cluster.ClusterArn)
	r.Created = append(r.Created, "ecs cluster "+name)
	return nil
}

// resolveNetwork picks the subnets and security groups tasks run in.
func resolveNetwork(ctx context.Context, c *clients, o BootstrapOptions, tags map[string]string, r *BootstrapResult) (Network, error) {
	subnetIDs := o.Subnets
	if len(subnetIDs) == 0 {
		vpc, err := findDefaultVPC(ctx, c)
		if errors.Is(err, ErrNotFound) {
			return Network{}, fmt.Errorf("bootstrap in %s: %w", c.region, ErrNoNetwork)
		}
		if err != nil {
			return Network{}, err
		}
		subnets, err := describeSubnets(ctx, c, nil, vpc)
		if err != nil {
			return Network{}, err
		}
		if len(subnets) == 0 {
			return Network{}, fmt.Errorf("bootstrap in %s: default VPC %s has no subnets: %w", c.region, vpc, ErrNoNetwork)
		}
		for _, s := range subnets {
			subnetIDs = append(subnetIDs, aws.ToString(s.SubnetId))
		}
		r.Found = append(r.Found, "default vpc "+vpc)
	}
	subnets, public, err := publicSubnets(ctx, c, subnetIDs)
	if err != nil {
		return Network{}, err
	}
	net := Network{Subnets: slices.Clone(subnetIDs), SecurityGroups: slices.Clone(o.SecurityGroups), AssignPublicIP: public}
	if len(net.SecurityGroups) == 0 {
		sg, err := ensureTasksSecurityGroup(ctx, c, aws.ToString(subnets[0].VpcId), tags, r)
		if err != nil {
			return Network{}, err
		}
		net.SecurityGroups = []string{sg}
	}
	return net, nil
}

// publicSubnets describes the subnets ids and says whether tasks in them
// get a public IP. Tasks need one to pull images without a NAT gateway, and
// only public subnets (those mapping public IPs) can route it.
func publicSubnets(ctx context.Context, c *clients, ids []string) ([]ec2types.Subnet, bool, error) {
	subnets, err := describeSubnets(ctx, c, ids, "")
	if err != nil {
		return nil, false, err
	}
	public := len(subnets) > 0
	for _, id := range ids {
		i := slices.IndexFunc(subnets, func(s ec2types.Subnet) bool { return aws.ToString(s.SubnetId) == id })
		if i < 0 {
			return nil, false, fmt.Errorf("describe subnets: subnet %s: %w", id, ErrNotFound)
		}
		public = public && aws.ToBool(subnets[i].MapPublicIpOnLaunch)
	}
	return subnets, public, nil
}

// NetworkFromFlags is the network of --subnets and --security-groups given
// to run or sync, with AssignPublicIP derived from the subnets as
// bootstrap derives it, so the flags behave like a bootstrap with them.
func (p *Provisioner) NetworkFromFlags(ctx context.Context, region string, subnets, groups []string) (Network, error) {
	_, public, err := publicSubnets(ctx, p.clients(region), subnets)
	if err != nil {
		return Network{}, err
	}
	return Network{Subnets: slices.Clone(subnets), SecurityGroups: slices.Clone(groups), AssignPublicIP: public}, nil
}

// Differs reports whether n and o are different networks: other subnets or
// security groups (in any order), or another public-IP choice.
func (n Network) Differs(o Network) bool {
	same := func(a, b []string) bool {
		a, b = slices.Clone(a), slices.Clone(b)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(a, b)
	}
	return !same(n.Subnets, o.Subnets) || !same(n.SecurityGroups, o.SecurityGroups) || n.AssignPublicIP != o.AssignPublicIP
}

// findDefaultVPC returns the ID of the region's default VPC, or ErrNotFound.
func findDefaultVPC(ctx context.Context, c *clients) (string, error) {
	out, err := c.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{
		Filters: []ec2types.Filter{{Name: aws.String("isDefault"), Values: []string{"true"}}},
	})
	if err != nil {
		return "", fmt.Errorf("describe vpcs: %w", err)
	}
	// Check IsDefault too: kumo ignores the filter and lists every VPC.
	for _, v := range out.Vpcs {
		if aws.ToBool(v.IsDefault) {
			return aws.ToString(v.VpcId), nil
		}
	}
	return "", fmt.Errorf("describe vpcs: default vpc: %w", ErrNotFound)
}

// describeSubnets returns the subnets with ids, or all subnets of vpc.
func describeSubnets(ctx context.Context, c *clients, ids []string, vpc string) ([]ec2types.Subnet, error) {
	in := &ec2.DescribeSubnetsInput{SubnetIds: ids}
	if vpc != "" {
		in.Filters = []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{vpc}}}
	}
	var out []ec2types.Subnet
	pages := ec2.NewDescribeSubnetsPaginator(c.ec2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if hasCode(err, "InvalidSubnetID.NotFound") {
			return nil, fmt.Errorf("describe subnets %v: %w", ids, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("describe subnets: %w", err)
		}
		for _, s := range page.Subnets {
			// Filter again: emulators may ignore filters.
			if vpc == "" || aws.ToString(s.VpcId) == vpc {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// ensureTasksSecurityGroup finds or creates "cloudpipe-tasks" in vpc.
func ensureTasksSecurityGroup(ctx context.Context, c *clients, vpc string, tags map[string]string, r *BootstrapResult) (string, error) {
	id, err := findTasksSecurityGroup(ctx, c, vpc)
	if err == nil {
		r.Found = append(r.Found, "security group "+id+" ("+tasksSecurityGroup+")")
		return id, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	var ec2Tags []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		ec2Tags = append(ec2Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	// A new group has no ingress rule and allows all egress: what tasks
	// need, nothing more.
	created, err := c.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(tasksSecurityGroup),
		Description: aws.String("cloudpipe tasks: egress only"),
		VpcId:       aws.String(vpc),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: ec2Tags,
		}},
	})
	if hasCode(err, "InvalidGroup.Duplicate") {
		// Created concurrently by another bootstrap: use it.
		if id, ferr := findTasksSecurityGroup(ctx, c, vpc); ferr == nil {
			r.Found = append(r.Found, "security group "+id+" ("+tasksSecurityGroup+")")
			return id, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("create security group %s: %w", tasksSecurityGroup, err)
	}
	id = aws.ToString(created.GroupId)
	r.Created = append(r.Created, "security group "+id+" ("+tasksSecurityGroup+")")
	return id, nil
}

// findTasksSecurityGroup returns the ID of "cloudpipe-tasks" in vpc, or
// ErrNotFound.
func findTasksSecurityGroup(ctx context.Context, c *clients, vpc string) (string, error) {
	out, err := c.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{tasksSecurityGroup}},
		{Name: aws.String("vpc-id"), Values: []string{vpc}},
	}})
	if err != nil {
		return "", fmt.Errorf("describe security groups %s: %w", tasksSecurityGroup, err)
	}
	// Filter again: kumo ignores the filters and lists every group.
	for _, sg := range out.SecurityGroups {
		if aws.ToString(sg.GroupName) == tasksSecurityGroup && aws.ToString(sg.VpcId) == vpc {
			return aws.ToString(sg.GroupId), nil
		}
	}
	return "", fmt.Errorf("describe security groups %s in %s: %w", tasksSecurityGroup, vpc, ErrNotFound)
}

// storeNetwork writes net to the state bucket at key unless it is there
// already.
func storeNetwork(ctx context.Context, c *clients, bucket, key string, net Network, r *BootstrapResult) error {
	what := "s3 object s3://" + bucket + "/" + key
	have, err := loadNetwork(ctx, c, bucket, key)
	switch {
	case err == nil && reflect.DeepEqual(have, net):
		r.Found = append(r.Found, what)
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	isNew := err != nil
	body, err := json.MarshalIndent(net, "", "  ")
	if err != nil {
		return fmt.Errorf("put network config: %w", err)
	}
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      &bucket,
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("put object s3://%s/%s: %w", bucket, key, err)
	}
	if isNew {
		r.Created = append(r.Created, what)
	} else {
		r.Updated = append(r.Updated, what)
	}
	return nil
}

// LoadNetwork returns the Network that Bootstrap (or PrepareRegion) stored
// for region in stateBucket, which is in the agent's region, or an error
// matching ErrNotFound when bootstrap has not run (no object, or no
// bucket).
func (p *Provisioner) LoadNetwork(ctx context.Context, region, stateBucket string) (Network, error) {
	return loadNetwork(ctx, p.clients(""), stateBucket, p.NetworkKey(region))
}

// NetworkKey is where the network of region is stored in the state bucket:
// config/network.json for the agent's own region (where bootstrap wrote it
// before workflows could name other regions), else
// config/regions/<region>/network.json.
func (p *Provisioner) NetworkKey(region string) string {
	if region == "" || region == p.cfg.Region {
		return networkKey
	}
	return "config/regions/" + region + "/network.json"
}

func loadNetwork(ctx context.Context, c *clients, bucket, key string) (Network, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(key)})
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nsk) || hasCode(err, "NoSuchKey") || isBucketNotFound(err) {
		return Network{}, fmt.Errorf("get object s3://%s/%s: %w", bucket, key, ErrNotFound)
	}
	if err != nil {
		return Network{}, fmt.Errorf("get object s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return Network{}, fmt.Errorf("get object s3://%s/%s: %w", bucket, key, err)
	}
	var net Network
	if err := json.Unmarshal(body, &net); err != nil {
		return Network{}, fmt.Errorf("decode s3://%s/%s: %w", bucket, key, err)
	}
	return net, nil
}
