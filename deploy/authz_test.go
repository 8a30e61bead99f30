package deploy_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
)

// call is one API call the agent made, in the order the calls started.
type call struct {
	Op    string // "<ServiceID>.<Operation>", as testenv.CallCounter names it
	Input any    // the SDK input, e.g. *s3.PutObjectInput
}

// callLog is SDK middleware that records every call in order. The order
// matters for tag conditions: a resource has tags only once the call that
// created it has been made. (testenv.CallCounter keeps calls per operation,
// not in order.)
type callLog struct {
	mu    sync.Mutex
	calls []call
}

func (l *callLog) attach(cfg *aws.Config) {
	opts := cfg.APIOptions[:len(cfg.APIOptions):len(cfg.APIOptions)]
	cfg.APIOptions = append(opts, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("deploy.callLog",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				l.mu.Lock()
				l.calls = append(l.calls, call{awsmiddleware.GetServiceID(ctx) + "." + awsmiddleware.GetOperationName(ctx), in.Parameters})
				l.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

func (l *callLog) all() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}

// authorizer turns API calls into the authorizations IAM makes for them. It
// remembers the tags each resource was created with, so that
// aws:ResourceTag/... is in the context of later calls on it, exactly when
// AWS would have it.
type authorizer struct {
	region, account string
	tags            map[string]map[string]string // resource ARN -> tags
}

func newAuthorizer(region, account string) *authorizer {
	return &authorizer{region: region, account: account, tags: map[string]map[string]string{}}
}

// requestTags is the context of a request that carries tags.
func requestTags(tags map[string]string) map[string]string {
	ctx := map[string]string{}
	for k, v := range tags {
		ctx["aws:RequestTag/"+k] = v
	}
	return ctx
}

// resourceTags is the context of a request on an existing resource.
func (a *authorizer) resourceTags(arn string) map[string]string {
	ctx := map[string]string{}
	for k, v := range a.tags[arn] {
		ctx["aws:ResourceTag/"+k] = v
	}
	return ctx
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func (a *authorizer) arn(service, resource string) string {
	return "arn:aws:" + service + ":" + a.region + ":" + a.account + ":" + resource
}

func (a *authorizer) bucketARN(b *string) string { return "arn:aws:s3:::" + aws.ToString(b) }
func (a *authorizer) objectARN(b, k *string) string {
	return "arn:aws:s3:::" + aws.ToString(b) + "/" + aws.ToString(k)
}
func (a *authorizer) roleARN(name string) string {
	if strings.HasPrefix(name, "arn:") {
		return name
	}
	return "arn:aws:iam::" + a.account + ":role/" + name
}
func (a *authorizer) functionARN(name *string) string {
	n := aws.ToString(name)
	if strings.HasPrefix(n, "arn:") {
		return n
	}
	return a.arn("lambda", "function:"+n)
}
func (a *authorizer) logGroupARN(name *string) string {
	return a.arn("logs", "log-group:"+aws.ToString(name))
}

// clusterARN is the ARN of a cluster given by name or ARN.
func (a *authorizer) clusterARN(cluster *string) string {
	c := aws.ToString(cluster)
	if strings.HasPrefix(c, "arn:") {
		return c
	}
	return a.arn("ecs", "cluster/"+c)
}

// queueARN derives a queue's ARN from its URL (.../<account>/<name>).
func (a *authorizer) queueARN(queueURL *string) string {
	u, err := url.Parse(aws.ToString(queueURL))
	if err != nil {
		return "invalid-queue-url"
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 {
		return "invalid-queue-url"
	}
	return "arn:aws:sqs:" + a.region + ":" + parts[0] + ":" + parts[1]
}

// authorizations returns what IAM authorizes for one call, following the
// Service Authorization Reference: the action an operation maps to (S3's
// differ from the operation names), its resource, the extra actions some
// requests need (tag on create, iam:PassRole) and the condition keys the
// request carries. An operation it has no model for is an error, so a new
// AWS call in the agent fails the test until it is modelled and allowed.
func (a *authorizer) authorizations(c call) ([]authzRequest, error) {
	r := func(action, resource string, ctx map[string]string) authzRequest {
		return authzRequest{Op: c.Op, Action: action, Resource: resource, Context: ctx}
	}
	var out []authzRequest
	switch in := c.Input.(type) {
	// STS and Secrets Manager
	case *sts.GetCallerIdentityInput:
		// "No permissions are required to perform this operation."
		// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
	case *secretsmanager.GetSecretValueInput:
		out = append(out, r("secretsmanager:GetSecretValue", aws.ToString(in.SecretId), nil))

	// S3: action names differ from operation names in places.
	case *s3.CreateBucketInput:
		b := a.bucketARN(in.Bucket)
		tags := map[string]string{}
		if in.CreateBucketConfiguration != nil {
			for _, t := range in.CreateBucketConfiguration.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
		}
		out = append(out, r("s3:CreateBucket", b, requestTags(tags)))
		if len(tags) > 0 {
			req := r("s3:TagResource", b, requestTags(tags))
			req.Why = "CreateBucket with tags also needs s3:TagResource"
			out = append(out, req)
		}
		a.tags[b] = tags
	case *s3.HeadBucketInput:
		out = append(out, r("s3:ListBucket", a.bucketARN(in.Bucket), nil))
	case *s3.GetBucketTaggingInput:
		out = append(out, r("s3:GetBucketTagging", a.bucketARN(in.Bucket), nil))
	case *s3.GetPublicAccessBlockInput:
		out = append(out, r("s3:GetBucketPublicAccessBlock", a.bucketARN(in.Bucket), nil))
	case *s3.PutPublicAccessBlockInput:
		out = append(out, r("s3:PutBucketPublicAccessBlock", a.bucketARN(in.Bucket), nil))
	case *s3.GetBucketEncryptionInput:
		out = append(out, r("s3:GetEncryptionConfiguration", a.bucketARN(in.Bucket), nil))
	case *s3.PutBucketEncryptionInput:
		out = append(out, r("s3:PutEncryptionConfiguration", a.bucketARN(in.Bucket), nil))
	case *s3.GetBucketVersioningInput:
		out = append(out, r("s3:GetBucketVersioning", a.bucketARN(in.Bucket), nil))
	case *s3.PutBucketVersioningInput:
		out = append(out, r("s3:PutBucketVersioning", a.bucketARN(in.Bucket), nil))
	case *s3.GetBucketNotificationConfigurationInput:
		out = append(out, r("s3:GetBucketNotification", a.bucketARN(in.Bucket), nil))
	case *s3.PutBucketNotificationConfigurationInput:
		out = append(out, r("s3:PutBucketNotification", a.bucketARN(in.Bucket), nil))
	case *s3.DeleteBucketInput:
		out = append(out, r("s3:DeleteBucket", a.bucketARN(in.Bucket), nil))
	case *s3.ListObjectsV2Input:
		out = append(out, r("s3:ListBucket", a.bucketARN(in.Bucket), nil))
	case *s3.GetObjectInput, *s3.HeadObjectInput:
		var b, k *string
		if g, ok := in.(*s3.GetObjectInput); ok {
			b, k = g.Bucket, g.Key
		} else {
			h := in.(*s3.HeadObjectInput)
			b, k = h.Bucket, h.Key
		}
		out = append(out, r("s3:GetObject", a.objectARN(b, k), nil))
		// Without s3:ListBucket, S3 answers a missing key with 403
		// AccessDenied instead of 404 NoSuchKey; the inventory and
		// LoadNetwork treat NoSuchKey as "not there yet".
		req := r("s3:ListBucket", a.bucketARN(b), nil)
		req.Why = "a missing key must read as NoSuchKey (404), not AccessDenied (403)"
		out = append(out, req)
	case *s3.PutObjectInput:
		out = append(out, r("s3:PutObject", a.objectARN(in.Bucket, in.Key), nil))
	case *s3.DeleteObjectInput:
		out = append(out, r("s3:DeleteObject", a.objectARN(in.Bucket, in.Key), nil))

	// SQS
	case *sqs.GetQueueUrlInput:
		out = append(out, r("sqs:GetQueueUrl", a.arn("sqs", aws.ToString(in.QueueName)), nil))
	case *sqs.CreateQueueInput:
		q := a.arn("sqs", aws.ToString(in.QueueName))
		out = append(out, r("sqs:CreateQueue", q, requestTags(in.Tags)))
		if len(in.Tags) > 0 {
			req := r("sqs:TagQueue", q, requestTags(in.Tags))
			req.Why = "CreateQueue with tags also needs sqs:TagQueue"
			out = append(out, req)
		}
		a.tags[q] = in.Tags
	case *sqs.GetQueueAttributesInput:
		out = append(out, r("sqs:GetQueueAttributes", a.queueARN(in.QueueUrl), nil))
	case *sqs.ListQueueTagsInput:
		out = append(out, r("sqs:ListQueueTags", a.queueARN(in.QueueUrl), nil))
	case *sqs.SetQueueAttributesInput:
		q := a.queueARN(in.QueueUrl)
		out = append(out, r("sqs:SetQueueAttributes", q, a.resourceTags(q)))
	case *sqs.ReceiveMessageInput:
		out = append(out, r("sqs:ReceiveMessage", a.queueARN(in.QueueUrl), nil))
	case *sqs.SendMessageInput:
		out = append(out, r("sqs:SendMessage", a.queueARN(in.QueueUrl), nil))
	case *sqs.DeleteMessageInput:
		out = append(out, r("sqs:DeleteMessage", a.queueARN(in.QueueUrl), nil))
	case *sqs.DeleteQueueInput:
		q := a.queueARN(in.QueueUrl)
		out = append(out, r("sqs:DeleteQueue", q, a.resourceTags(q)))

	// IAM
	case *iam.GetRoleInput:
		out = append(out, r("iam:GetRole", a.roleARN(aws.ToString(in.RoleName)), nil))
	case *iam.GetRolePolicyInput:
		out = append(out, r("iam:GetRolePolicy", a.roleARN(aws.ToString(in.RoleName)), nil))
	case *iam.ListRolePoliciesInput:
		out = append(out, r("iam:ListRolePolicies", a.roleARN(aws.ToString(in.RoleName)), nil))
	case *iam.CreateRoleInput:
		role := a.roleARN(aws.ToString(in.RoleName))
		tags := map[string]string{}
		for _, t := range in.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		out = append(out, r("iam:CreateRole", role, requestTags(tags)))
		if len(tags) > 0 {
			req := r("iam:TagRole", role, requestTags(tags))
			req.Why = "CreateRole with tags also needs iam:TagRole"
			out = append(out, req)
		}
		a.tags[role] = tags
	case *iam.PutRolePolicyInput:
		role := a.roleARN(aws.ToString(in.RoleName))
		out = append(out, r("iam:PutRolePolicy", role, a.resourceTags(role)))
	case *iam.DeleteRolePolicyInput:
		role := a.roleARN(aws.ToString(in.RoleName))
		out = append(out, r("iam:DeleteRolePolicy", role, a.resourceTags(role)))
	case *iam.UpdateAssumeRolePolicyInput:
		role := a.roleARN(aws.ToString(in.RoleName))
		out = append(out, r("iam:UpdateAssumeRolePolicy", role, a.resourceTags(role)))
	case *iam.DeleteRoleInput:
		role := a.roleARN(aws.ToString(in.RoleName))
		out = append(out, r("iam:DeleteRole", role, a.resourceTags(role)))
		delete(a.tags, role)

	// Lambda
	case *lambda.GetFunctionInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:GetFunction", fn, nil))
		req := r("lambda:ListTags", fn, nil)
		req.Why = "GetFunction returns the tags of a tagged function only with lambda:ListTags"
		out = append(out, req)
	case *lambda.GetFunctionConfigurationInput:
		out = append(out, r("lambda:GetFunctionConfiguration", a.functionARN(in.FunctionName), nil))
	case *lambda.GetPolicyInput:
		out = append(out, r("lambda:GetPolicy", a.functionARN(in.FunctionName), nil))
	case *lambda.CreateFunctionInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:CreateFunction", fn, requestTags(in.Tags)))
		if len(in.Tags) > 0 {
			req := r("lambda:TagResource", fn, requestTags(in.Tags))
			req.Why = "CreateFunction with tags also needs lambda:TagResource"
			out = append(out, req)
		}
		out = append(out, a.passRole(c, aws.ToString(in.Role), "lambda.amazonaws.com"))
		a.tags[fn] = in.Tags
	case *lambda.UpdateFunctionConfigurationInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:UpdateFunctionConfiguration", fn, a.resourceTags(fn)))
		if in.Role != nil {
			out = append(out, a.passRole(c, aws.ToString(in.Role), "lambda.amazonaws.com"))
		}
	case *lambda.UpdateFunctionCodeInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:UpdateFunctionCode", fn, a.resourceTags(fn)))
	case *lambda.AddPermissionInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:AddPermission", fn, merge(a.resourceTags(fn),
			map[string]string{"lambda:Principal": aws.ToString(in.Principal)})))
	case *lambda.RemovePermissionInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:RemovePermission", fn, a.resourceTags(fn)))
	case *lambda.DeleteFunctionInput:
		fn := a.functionARN(in.FunctionName)
		out = append(out, r("lambda:DeleteFunction", fn, a.resourceTags(fn)))
		delete(a.tags, fn)

	// ECS: task-definition actions take no resource-level permissions.
	case *ecs.DescribeClustersInput:
		for _, cl := range in.Clusters {
			out = append(out, r("ecs:DescribeClusters", a.arn("ecs", "cluster/"+cl), nil))
		}
	case *ecs.CreateClusterInput:
		cl := a.arn("ecs", "cluster/"+aws.ToString(in.ClusterName))
		tags := ecsTags(in.Tags)
		out = append(out, r("ecs:CreateCluster", "*", requestTags(tags)))
		if len(tags) > 0 {
			req := r("ecs:TagResource", cl, merge(requestTags(tags), map[string]string{"ecs:CreateAction": "CreateCluster"}))
			req.Why = "CreateCluster with tags also needs ecs:TagResource"
			out = append(out, req)
		}
	case *ecs.RegisterTaskDefinitionInput:
		tags := ecsTags(in.Tags)
		out = append(out, r("ecs:RegisterTaskDefinition", "*", requestTags(tags)))
		if len(tags) > 0 {
			// The new revision's number is not known before the call.
			td := a.arn("ecs", "task-definition/"+aws.ToString(in.Family)+":1")
			req := r("ecs:TagResource", td, merge(requestTags(tags), map[string]string{"ecs:CreateAction": "RegisterTaskDefinition"}))
			req.Why = "RegisterTaskDefinition with tags also needs ecs:TagResource"
			out = append(out, req)
		}
		for _, role := range []*string{in.ExecutionRoleArn, in.TaskRoleArn} {
			if aws.ToString(role) != "" {
				out = append(out, a.passRole(c, aws.ToString(role), "ecs-tasks.amazonaws.com"))
			}
		}
	case *ecs.RunTaskInput:
		// RunTask is authorized on the task definition, with the cluster
		// as ecs:cluster, and passes the task definition's execution and
		// task roles: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
		td := aws.ToString(in.TaskDefinition)
		if !strings.HasPrefix(td, "arn:") {
			td = a.arn("ecs", "task-definition/"+td)
		}
		out = append(out, r("ecs:RunTask", td, map[string]string{"ecs:cluster": a.clusterARN(in.Cluster)}))
		family := td[strings.LastIndex(td, "/")+1:]
		if i := strings.IndexByte(family, ':'); i >= 0 {
			family = family[:i]
		}
		for _, role := range []string{family + "-exec", family + "-task"} {
			out = append(out, a.passRole(c, role, "ecs-tasks.amazonaws.com"))
		}
	case *ecs.ListTasksInput:
		// Without a containerInstance filter ListTasks is authorized on "*"
		// (see provision's lambdaPolicy).
		out = append(out, r("ecs:ListTasks", "*", map[string]string{"ecs:cluster": a.clusterARN(in.Cluster)}))
	case *ecs.DescribeTasksInput:
		for _, task := range in.Tasks {
			out = append(out, r("ecs:DescribeTasks", task, map[string]string{"ecs:cluster": a.clusterARN(in.Cluster)}))
		}
	case *ecs.DeregisterTaskDefinitionInput:
		out = append(out, r("ecs:DeregisterTaskDefinition", "*", nil))

	// CloudWatch Logs
	case *cloudwatchlogs.DescribeLogGroupsInput:
		out = append(out, r("logs:DescribeLogGroups", "*", nil))
	case *cloudwatchlogs.ListTagsForResourceInput:
		out = append(out, r("logs:ListTagsForResource", aws.ToString(in.ResourceArn), nil))
	case *cloudwatchlogs.CreateLogGroupInput:
		g := a.logGroupARN(in.LogGroupName)
		out = append(out, r("logs:CreateLogGroup", g, requestTags(in.Tags)))
		if len(in.Tags) > 0 {
			req := r("logs:TagResource", g, requestTags(in.Tags))
			req.Why = "CreateLogGroup with tags also needs logs:TagResource"
			out = append(out, req)
		}
		a.tags[g] = in.Tags
	case *cloudwatchlogs.PutRetentionPolicyInput:
		g := a.logGroupARN(in.LogGroupName)
		out = append(out, r("logs:PutRetentionPolicy", g, a.resourceTags(g)))
	case *cloudwatchlogs.DeleteLogGroupInput:
		g := a.logGroupARN(in.LogGroupName)
		out = append(out, r("logs:DeleteLogGroup", g, a.resourceTags(g)))
		delete(a.tags, g)

	// EC2 (bootstrap only)
	case *ec2.DescribeVpcsInput:
		out = append(out, r("ec2:DescribeVpcs", "*", nil))
	case *ec2.DescribeSubnetsInput:
		out = append(out, r("ec2:DescribeSubnets", "*", nil))
	case *ec2.DescribeSecurityGroupsInput:
		out = append(out, r("ec2:DescribeSecurityGroups", "*", nil))
	case *ec2.CreateSecurityGroupInput:
		// Authorized on the VPC and on the new group.
		sg := a.arn("ec2", "security-group/sg-new")
		out = append(out, r("ec2:CreateSecurityGroup", a.arn("ec2", "vpc/"+aws.ToString(in.VpcId)), nil),
			r("ec2:CreateSecurityGroup", sg, nil))
		if len(in.TagSpecifications) > 0 {
			req := r("ec2:CreateTags", sg, map[string]string{"ec2:CreateAction": "CreateSecurityGroup"})
			req.Why = "CreateSecurityGroup with TagSpecifications also needs ec2:CreateTags"
			out = append(out, req)
		}

	default:
		return nil, fmt.Errorf("%s (%T): no IAM model: add its action, resource and context to authorizations", c.Op, c.Input)
	}
	return out, nil
}

// passRole is the iam:PassRole authorization of a request that hands role
// to service.
func (a *authorizer) passRole(c call, role, service string) authzRequest {
	return authzRequest{Op: c.Op, Action: "iam:PassRole", Resource: a.roleARN(role),
		Context: map[string]string{"iam:PassedToService": service},
		Why:     c.Op + " passes the role to " + service}
}

func ecsTags(tags []ecstypes.Tag) map[string]string {
	out := map[string]string{}
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}
