package awsrules

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// authz is one authorization IAM makes for a request: one action on one
// resource, with the request's condition keys.
type authz struct {
	op       string // the operation it is for, "SQS.SendMessageBatch"
	action   string // "sqs:SendMessage"
	resource string // an ARN, or "*"
	context  map[string]any
	// denied is the error the service answers when IAM denies this
	// authorization; nil: accessDenied's, for the service's own actions.
	denied *faultproxy.APIError
}

// iamPrefixes are the IAM service prefixes of the services cloudpipe
// calls, by the SDK's service ID (faultproxy.Operation's first part).
var iamPrefixes = map[string]string{
	"S3": "s3", "SQS": "sqs", "IAM": "iam", "STS": "sts", "Lambda": "lambda", "ECS": "ecs",
	"CloudWatch Logs": "logs", "EC2": "ec2", "Secrets Manager": "secretsmanager", "KMS": "kms", "Batch": "batch", "SSM": "ssm",
}

// actionOf names the IAM action an operation is authorized as. Most
// operations are authorized as the action of the same name; these are not.
// S3: https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
// SQS batch actions: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
// Lambda Invoke: https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html
var actionOf = map[string]string{
	"S3.ListObjectsV2":                            "s3:ListBucket",
	"S3.ListObjects":                              "s3:ListBucket",
	"S3.HeadBucket":                               "s3:ListBucket",
	"S3.HeadObject":                               "s3:GetObject",
	"S3.ListBuckets":                              "s3:ListAllMyBuckets",
	"S3.GetBucketNotificationConfiguration":       "s3:GetBucketNotification",
	"S3.PutBucketNotificationConfiguration":       "s3:PutBucketNotification",
	"S3.GetBucketEncryption":                      "s3:GetEncryptionConfiguration",
	"S3.PutBucketEncryption":                      "s3:PutEncryptionConfiguration",
	"S3.GetPublicAccessBlock":                     "s3:GetBucketPublicAccessBlock",
	"S3.PutPublicAccessBlock":                     "s3:PutBucketPublicAccessBlock",
	"S3.DeleteBucketTagging":                      "s3:PutBucketTagging",
	"S3.PostObject":                               "s3:PutObject", // multipart: create and complete
	"S3.CreateMultipartUpload":                    "s3:PutObject",
	"S3.UploadPart":                               "s3:PutObject",
	"S3.CompleteMultipartUpload":                  "s3:PutObject",
	"SQS.SendMessageBatch":                        "sqs:SendMessage",
	"SQS.DeleteMessageBatch":                      "sqs:DeleteMessage",
	"SQS.ChangeMessageVisibilityBatch":            "sqs:ChangeMessageVisibility",
	"Lambda.Invoke":                               "lambda:InvokeFunction",
	"S3.DeleteObjects":                            "s3:DeleteObject",
	"S3.ListMultipartUploads":                     "s3:ListBucketMultipartUploads",
	"S3.ListParts":                                "s3:ListMultipartUploadParts",
	"S3.CopyObject":                               "s3:PutObject",
	"S3.GetBucketLifecycleConfiguration":          "s3:GetLifecycleConfiguration",
	"S3.PutBucketLifecycleConfiguration":          "s3:PutLifecycleConfiguration",
	"S3.GetBucketCors":                            "s3:GetBucketCORS",
	"S3.PutBucketCors":                            "s3:PutBucketCORS",
	"S3.GetBucketReplication":                     "s3:GetReplicationConfiguration",
	"S3.GetBucketAccelerateConfiguration":         "s3:GetAccelerateConfiguration",
	"S3.GetBucketIntelligentTieringConfiguration": "s3:GetIntelligentTieringConfiguration",
}

// multipartAction names the action of a request on a multipart upload that
// faultproxy.Operation names after the object's: aborting an upload
// (DELETE ?uploadId) is s3:AbortMultipartUpload, not s3:DeleteObject, and
// listing its parts (GET ?uploadId) s3:ListMultipartUploadParts.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
func multipartAction(r *http.Request) string {
	if _, ok := r.URL.Query()["uploadId"]; !ok {
		return ""
	}
	switch r.Method {
	case http.MethodDelete:
		return "s3:AbortMultipartUpload"
	case http.MethodGet:
		return "s3:ListMultipartUploadParts"
	}
	return ""
}

// noAuthorization are operations IAM does not authorize: "No permissions
// are required to perform this operation."
// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
var noAuthorization = map[string]bool{"STS.GetCallerIdentity": true}

// params are a request's parameters as its protocol carries them.
type params struct {
	json map[string]any // JSON body: X-Amz-Target services, Lambda
	form url.Values     // query protocol: IAM, STS, EC2
	path []string       // the unescaped path segments: S3, Lambda
	xml  []byte         // S3's XML bodies
}

func readParams(c call) params {
	var p params
	for _, seg := range strings.Split(strings.TrimPrefix(c.r.URL.EscapedPath(), "/"), "/") {
		s, err := url.PathUnescape(seg)
		if err != nil {
			s = seg
		}
		p.path = append(p.path, s)
	}
	switch ct := c.r.Header.Get("Content-Type"); {
	case strings.Contains(ct, "json") || (len(c.body) > 0 && c.body[0] == '{'):
		_ = json.Unmarshal(c.body, &p.json)
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		p.form, _ = url.ParseQuery(string(c.body))
	case bytes.HasPrefix(bytes.TrimSpace(c.body), []byte("<")):
		p.xml = c.body
	}
	if p.form == nil {
		p.form = c.r.URL.Query()
	}
	return p
}

// str returns a parameter by name: the JSON body's, else the form's.
func (p params) str(name string) string {
	if v, ok := p.json[name].(string); ok {
		return v
	}
	return p.form.Get(name)
}

// strs returns a list parameter: a JSON list, or the query protocol's
// name.member.N / name.N members.
func (p params) strs(name string) []string {
	if list, ok := p.json[name].([]any); ok {
		var out []string
		for _, v := range list {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	var out []string
	for i := 1; ; i++ {
		v := p.form.Get(name + ".member." + strconv.Itoa(i))
		if v == "" {
			v = p.form.Get(name + "." + strconv.Itoa(i))
		}
		if v == "" {
			return out
		}
		out = append(out, v)
	}
}

// formTag matches the query protocol's tag members: IAM's
// Tags.member.N.Key, EC2's TagSpecification.N.Tag.M.Key.
var formTag = regexp.MustCompile(`^(Tags\.member\.\d+|TagSpecification\.\d+\.Tag\.\d+)\.Key$`)

// tags returns the tags a request creates its resource with, in any of the
// shapes the services use: a JSON map (SQS, Lambda, Logs), a JSON list of
// key/value (ECS), form members (IAM, EC2) or S3's XML Tag elements.
func (p params) tags() map[string]string {
	out := map[string]string{}
	for _, name := range []string{"tags", "Tags"} {
		switch t := p.json[name].(type) {
		case map[string]any:
			for k, v := range t {
				out[k], _ = v.(string)
			}
		case []any:
			for _, e := range t {
				m, _ := e.(map[string]any)
				k, _ := m["key"].(string)
				if k == "" {
					k, _ = m["Key"].(string)
				}
				v, _ := m["value"].(string)
				if v == "" {
					v, _ = m["Value"].(string)
				}
				if k != "" {
					out[k] = v
				}
			}
		}
	}
	for key, vs := range p.form {
		if m := formTag.FindStringSubmatch(key); m != nil && len(vs) > 0 {
			out[vs[0]] = p.form.Get(m[1] + ".Value")
		}
	}
	if len(p.xml) > 0 {
		var doc struct {
			Tags []struct {
				Key   string `xml:"Key"`
				Value string `xml:"Value"`
			} `xml:"Tags>Tag"`
		}
		if xml.Unmarshal(p.xml, &doc) == nil {
			for _, t := range doc.Tags {
				out[t.Key] = t.Value
			}
		}
	}
	return out
}

// lastOfARN returns what follows the last sep of an ARN, or s itself when
// it is not an ARN.
func lastOfARN(s, sep string) string {
	if !strings.HasPrefix(s, "arn:") {
		return s
	}
	return s[strings.LastIndex(s, sep)+1:]
}

// vars are the values of an ARN format's ${Variables} for one resource.
type vars map[string]string

// resourceVars names the resources of a request, one vars each, from the
// request's parameters: the services' own ways of naming a queue, a bucket
// or a task. The ARN is then built from the Service Authorization
// Reference's format for the action's resource types.
func (a *authority) resourceVars(c call, p params) ([]vars, error) {
	service, op, _ := strings.Cut(c.op, ".")
	switch service {
	case "S3":
		v := vars{"BucketName": p.path[0]}
		if len(p.path) > 1 && strings.Join(p.path[1:], "/") != "" {
			v["ObjectName"] = strings.Join(p.path[1:], "/")
		}
		if v["BucketName"] == "" {
			return nil, nil
		}
		return []vars{v}, nil
	case "SQS":
		if u := p.str("QueueUrl"); u != "" {
			parsed, err := url.Parse(u)
			if err != nil {
				return nil, fmt.Errorf("queue URL %q: %w", u, err)
			}
			parts := strings.Split(strings.Trim(parsed.Path, "/"), "/")
			if len(parts) != 2 {
				return nil, fmt.Errorf("queue URL %q is not .../ACCOUNT/NAME", u)
			}
			return []vars{{"Account": parts[0], "QueueName": parts[1]}}, nil
		}
		if n := p.str("QueueName"); n != "" {
			return []vars{{"QueueName": n}}, nil
		}
		return nil, nil
	case "IAM":
		if op == "CreateServiceLinkedRole" {
			// IAM authorizes the create on the role it would make.
			service := p.str("AWSServiceName")
			name, path, ok := serviceLinkedRole(service, p.str("CustomSuffix"))
			if !ok {
				return nil, fmt.Errorf("%w: no service-linked role known for service %q", errNoModel, service)
			}
			return []vars{{"RoleNameWithPath": strings.TrimPrefix(path, "/") + name}}, nil
		}
		v := vars{}
		if n := p.str("RoleName"); n != "" {
			v["RoleNameWithPath"] = a.roleNameWithPath(c.r.Context(), n, p.str("Path"))
		}
		if n := p.str("InstanceProfileName"); n != "" {
			v["InstanceProfileNameWithPath"] = n
		}
		if len(v) == 0 {
			return nil, nil
		}
		return []vars{v}, nil
	case "SSM":
		return ssmVars(p), nil
	case "Lambda":
		name := p.str("FunctionName")
		if len(p.path) >= 3 && p.path[1] == "functions" {
			name = p.path[2]
		}
		if len(p.path) >= 3 && p.path[1] == "tags" {
			name = strings.Join(p.path[2:], "/")
		}
		if name == "" {
			return nil, nil
		}
		return []vars{{"FunctionName": lastOfARN(name, ":")}}, nil
	case "CloudWatch Logs":
		v := vars{}
		if g := p.str("logGroupName"); g != "" {
			v["LogGroupName"] = g
		}
		if r := p.str("resourceArn"); strings.Contains(r, ":log-group:") {
			v["LogGroupName"] = strings.TrimSuffix(r[strings.Index(r, ":log-group:")+len(":log-group:"):], ":*")
		}
		if s := p.str("logStreamName"); s != "" {
			v["LogStreamName"] = s
		}
		if len(v) == 0 {
			return nil, nil
		}
		return []vars{v}, nil
	case "Secrets Manager":
		id := p.str("SecretId")
		if id == "" {
			return nil, nil
		}
		return []vars{{"SecretId": a.secretID(id)}}, nil
	case "ECS":
		return a.ecsVars(op, p)
	case "KMS":
		return a.kmsVars(c.r.Context(), p.str("KeyId")), nil
	case "Batch":
		return a.batchVars(c.r.Context(), op, p)
	case "EC2":
		switch op {
		case "CreateSecurityGroup":
			// The new group's ID is not known before the call: IAM
			// authorizes the create on security-group/*.
			return []vars{{"SecurityGroupId": "*", "VpcId": p.str("VpcId")}}, nil
		case "AuthorizeSecurityGroupEgress", "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupEgress", "RevokeSecurityGroupIngress", "DeleteSecurityGroup":
			return []vars{{"SecurityGroupId": p.str("GroupId")}}, nil
		}
		return nil, nil
	}
	return nil, nil
}

// roleNameWithPath is the part of a role's ARN after "role/": its path
// (without the leading "/") and its name. IAM authorizes a request on a
// role by the role's ARN, which holds its path
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns):
// the path CreateRole gives, else that of the role in the emulator. A role
// that does not exist can only be named by its name, at path "/".
func (a *authority) roleNameWithPath(ctx context.Context, name, path string) string {
	if path == "" {
		if out, err := a.target.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)}); err == nil {
			path = aws.ToString(out.Role.Path)
		}
	}
	return strings.TrimPrefix(path, "/") + name
}

// clusterName returns the cluster an ECS request names (a name or an ARN),
// or "default" when it names none, as ECS does.
func clusterName(p params) string {
	c := p.str("cluster")
	if c == "" {
		return "default"
	}
	return lastOfARN(c, "/")
}

func (a *authority) ecsVars(op string, p params) ([]vars, error) {
	cluster := clusterName(p)
	switch op {
	case "DescribeTasks", "StopTask":
		ids := p.strs("tasks")
		if t := p.str("task"); t != "" {
			ids = append(ids, t)
		}
		var out []vars
		for _, t := range ids {
			out = append(out, vars{"ClusterName": cluster, "TaskId": lastOfARN(t, "/")})
		}
		return out, nil
	case "DescribeClusters":
		var out []vars
		for _, cl := range p.strs("clusters") {
			out = append(out, vars{"ClusterName": lastOfARN(cl, "/")})
		}
		return out, nil
	case "CreateCluster":
		return []vars{{"ClusterName": p.str("clusterName")}}, nil
	case "DeleteCluster":
		return []vars{{"ClusterName": cluster}}, nil
	case "RunTask", "StartTask":
		family, rev, err := a.taskDefinition(p.str("taskDefinition"))
		if err != nil {
			return nil, err
		}
		return []vars{{"TaskDefinitionFamilyName": family, "TaskDefinitionRevisionNumber": rev}}, nil
	case "RegisterTaskDefinition":
		// The new revision's number is not known before the call.
		return []vars{{"TaskDefinitionFamilyName": p.str("family"), "TaskDefinitionRevisionNumber": "*"}}, nil
	case "TagResource", "UntagResource", "ListTagsForResource":
		r := p.str("resourceArn")
		if i := strings.Index(r, ":cluster/"); i >= 0 {
			return []vars{{"ClusterName": r[i+len(":cluster/"):]}}, nil
		}
		return nil, nil
	}
	return nil, nil
}

// taskDefinition splits a task definition reference (family, family:rev
// or an ARN) into family and revision; a bare family means its latest
// revision, as RunTask reads it.
func (a *authority) taskDefinition(ref string) (family, revision string, err error) {
	ref = lastOfARN(ref, "/")
	family, revision, ok := strings.Cut(ref, ":")
	if ok {
		return family, revision, nil
	}
	a.mu.Lock()
	n := a.latest[family]
	a.mu.Unlock()
	if n == 0 {
		return "", "", fmt.Errorf("task definition %q: no revision of it was registered through the proxy", ref)
	}
	return family, strconv.Itoa(n), nil
}

// secretID returns the secret's full ARN when the proxy saw it created,
// so that IAM matches it as AWS does (names and partial ARNs resolve to the
// full ARN, with its 6-character suffix), else the ID as given.
func (a *authority) secretID(id string) string {
	name := id
	if i := strings.Index(id, ":secret:"); i >= 0 {
		name = id[i+len(":secret:"):]
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if full, ok := a.secrets[name]; ok {
		return full[strings.Index(full, ":secret:")+len(":secret:"):]
	}
	return name
}

// errNoModel marks a request the proxy cannot map to IAM: the proxy
// answers it with an error rather than guessing.
var errNoModel = errors.New("no IAM model")

// authorizations returns what IAM authorizes for a call signed in region.
func (a *authority) authorizations(c call, region string) ([]authz, error) {
	if noAuthorization[c.op] {
		return nil, nil
	}
	service, op, _ := strings.Cut(c.op, ".")
	prefix, ok := iamPrefixes[service]
	if !ok {
		return nil, fmt.Errorf("%w for service %q", errNoModel, service)
	}
	action := actionOf[c.op]
	if service == "S3" {
		action = cmp.Or(multipartAction(c.r), action)
	}
	if action == "" {
		action = prefix + ":" + op
	}
	p := readParams(c)
	vs, err := a.resourceVars(c, p)
	if err != nil {
		return nil, err
	}
	resources, err := a.resources(action, region, vs, op)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.op, err)
	}
	reqTags := p.tags()
	base := map[string]any{}
	if len(reqTags) > 0 {
		base = requestTagContext(reqTags)
	}
	if service == "ECS" {
		base["ecs:cluster"] = a.arn("ecs", region, "cluster/"+clusterName(p))
	}
	if service == "Lambda" && op == "AddPermission" {
		base["lambda:Principal"] = p.str("Principal")
	}
	if service == "IAM" && op == "CreateServiceLinkedRole" {
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_awsservicename
		base["iam:AWSServiceName"] = p.str("AWSServiceName")
	}
	if service == "IAM" && (op == "AttachRolePolicy" || op == "DetachRolePolicy") {
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_policyarn
		base["iam:PolicyARN"] = p.str("PolicyArn")
	}
	var out []authz
	for _, res := range resources {
		out = append(out, authz{op: c.op, action: action, resource: res, context: a.withResourceTags(c.r.Context(), base, res)})
	}
	deps, err := a.dependent(c, p, region, resources, reqTags)
	if err != nil {
		return nil, err
	}
	out = append(out, deps...)
	return append(out, a.dataKeyAuthorizations(c, p, region)...), nil
}

// requestTagContext is the condition keys of a request that tags what it
// creates: aws:RequestTag/KEY for each tag, and aws:TagKeys.
func requestTagContext(tags map[string]string) map[string]any {
	ctx := map[string]any{}
	keys := slices.Sorted(maps.Keys(tags))
	for _, k := range keys {
		ctx["aws:RequestTag/"+k] = tags[k]
	}
	ctx["aws:TagKeys"] = keys
	return ctx
}

// arn builds a regional ARN in the proxy's account.
func (a *authority) arn(service, region, resource string) string {
	return "arn:aws:" + service + ":" + region + ":" + a.cfg.Account + ":" + resource
}

func (a *authority) withResourceTags(ctx context.Context, base map[string]any, resource string) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range a.resourceTags(ctx, resource) {
		out["aws:ResourceTag/"+k] = v
	}
	return out
}

// resourceTags returns the tags of the resource arn names: those the proxy
// saw it created or tagged with, else, for the kinds whose tags cloudpipe's
// policies test (roles, queues, functions), those the emulator holds, so a
// resource made before this proxy started (by an earlier demo, or through
// another proxy) is judged by its real tags.
func (a *authority) resourceTags(ctx context.Context, arn string) map[string]string {
	a.mu.Lock()
	tags, ok := a.tags[arn]
	a.mu.Unlock()
	if ok {
		return tags
	}
	tags = a.readTags(ctx, arn)
	a.mu.Lock()
	if _, learned := a.tags[arn]; !learned {
		a.tags[arn] = tags
	}
	a.mu.Unlock()
	return tags
}

// readTags reads a resource's tags from the emulator; nil when it has none,
// does not exist, or is of a kind not read.
func (a *authority) readTags(ctx context.Context, arn string) map[string]string {
	parts := strings.SplitN(arn, ":", 6) // arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE
	if len(parts) < 6 {
		return nil
	}
	switch service, resource := parts[2], parts[5]; {
	case service == "iam" && strings.HasPrefix(resource, "role/"):
		// GetRole answers the role's tags (kumo has no ListRoleTags).
		out, err := a.target.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(resource[strings.LastIndex(resource, "/")+1:])})
		if err != nil {
			return nil
		}
		tags := map[string]string{}
		for _, t := range out.Role.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		return tags
	case service == "sqs":
		u := a.targetURL.JoinPath(parts[4], resource).String()
		out, err := a.targetSQS.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(u)})
		if err != nil {
			return nil
		}
		return out.Tags
	case service == "batch":
		return a.readBatchTags(ctx, arn)
	case service == "lambda" && strings.HasPrefix(resource, "function:"):
		// kumo names every function in us-east-1.
		out, err := a.targetLambda.ListTags(ctx, &lambda.ListTagsInput{
			Resource: aws.String("arn:aws:lambda:us-east-1:" + parts[4] + ":" + resource)})
		if err != nil {
			return nil
		}
		return out.Tags
	}
	return nil
}

// placeholder matches an ARN format's ${Variable}.
var placeholder = regexp.MustCompile(`\$\{([A-Za-z]+)\}`)

// resources builds the ARNs IAM authorizes action on: each required
// resource type's, and the first optional type the request names; "*" for
// an action that takes no resource or names none.
func (a *authority) resources(action, region string, vs []vars, op string) ([]string, error) {
	desc, err := a.cfg.Evaluator.Describe(action)
	if err != nil {
		return nil, err
	}
	if len(desc.ResourceTypes) == 0 {
		return []string{"*"}, nil
	}
	// ECS authorizes ListTasks without a container-instance filter on the
	// literal "*", although the reference marks container-instance as
	// required (ListTasks lists by cluster; its condition key ecs:cluster
	// scopes it):
	// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/security_iam_id-based-policy-examples.html
	if desc.Name == "ecs:ListTasks" {
		return []string{"*"}, nil
	}
	if len(vs) == 0 {
		vs = []vars{{}}
	}
	var out []string
	for _, v := range vs {
		fill := func(format string) (string, bool) {
			ok := true
			s := placeholder.ReplaceAllStringFunc(format, func(m string) string {
				name := m[2 : len(m)-1]
				switch name {
				case "Partition":
					return "aws"
				case "Region":
					if v["Region"] != "" {
						return v["Region"]
					}
					return region
				case "Account":
					if v[publicParameter] != "" {
						return ""
					}
					if v["Account"] != "" {
						return v["Account"]
					}
					return a.cfg.Account
				}
				if v[name] == "" {
					ok = false
				}
				return v[name]
			})
			return s, ok
		}
		optional := false
		named := false
		for _, rt := range desc.ResourceTypes {
			if batchSkips(desc.Name, rt.Name, v) {
				continue
			}
			arn, ok := fill(rt.ARN)
			switch {
			case rt.Required && !ok:
				return nil, fmt.Errorf("%w: %s needs a %s, which the request does not name", errNoModel, action, rt.Name)
			case rt.Required:
				out = append(out, arn)
				named = true
			case ok && !optional:
				out = append(out, arn)
				optional, named = true, true
			}
		}
		if !named {
			out = append(out, "*")
		}
	}
	// One authorization per resource: a request naming a resource twice
	// (a queue with each of its environments) is authorized on it once.
	var once []string
	for _, arn := range out {
		if !slices.Contains(once, arn) {
			once = append(once, arn)
		}
	}
	return once, nil
}

// dependent returns the further authorizations some requests need, beyond
// their own action: tagging on create, and passing a role to a service.
func (a *authority) dependent(c call, p params, region string, resources []string, reqTags map[string]string) ([]authz, error) {
	if strings.HasPrefix(c.op, "Batch.") {
		return a.batchDependent(c.r.Context(), c, p, region, reqTags), nil
	}
	var out []authz
	add := func(action, resource string, ctx map[string]any) {
		out = append(out, authz{op: c.op, action: action, resource: resource, context: ctx})
	}
	tagCtx := func(extra map[string]any) map[string]any {
		ctx := requestTagContext(reqTags)
		for k, v := range extra {
			ctx[k] = v
		}
		return ctx
	}
	// Creating a resource with tags also needs the service's tag action
	// on it: "To create a resource with tags, you need both the create
	// and the tag permission."
	// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_tags.html#access_tags_control-requests
	// ECS and EC2 pass the creating action in ecs:CreateAction /
	// ec2:CreateAction:
	// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/supported-iam-actions-tagging.html
	// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
	tagActions := map[string]string{
		"SQS.CreateQueue": "sqs:TagQueue", "IAM.CreateRole": "iam:TagRole", "IAM.CreateInstanceProfile": "iam:TagInstanceProfile", "Lambda.CreateFunction": "lambda:TagResource",
		"CloudWatch Logs.CreateLogGroup": "logs:TagResource", "S3.CreateBucket": "s3:TagResource",
		"ECS.CreateCluster": "ecs:TagResource", "ECS.RegisterTaskDefinition": "ecs:TagResource", "ECS.RunTask": "ecs:TagResource",
		"EC2.CreateSecurityGroup": "ec2:CreateTags", "EC2.CreateVpc": "ec2:CreateTags", "EC2.CreateSubnet": "ec2:CreateTags",
		"Secrets Manager.CreateSecret": "secretsmanager:TagResource",
	}
	if tag, ok := tagActions[c.op]; ok && len(reqTags) > 0 {
		_, op, _ := strings.Cut(c.op, ".")
		extra := map[string]any{}
		switch {
		case strings.HasPrefix(c.op, "ECS."):
			extra["ecs:CreateAction"] = op
		case strings.HasPrefix(c.op, "EC2."):
			extra["ec2:CreateAction"] = op
		}
		// The tags go on the created resource, the first the action
		// names (not CreateSecurityGroup's VPC); RunTask's tag its new
		// tasks, which have no ARN yet.
		if op != "RunTask" && len(resources) > 0 {
			add(tag, resources[0], tagCtx(extra))
		}
	}
	// Handing a role to a service needs iam:PassRole on it:
	// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
	pass := func(role, service string) {
		if role == "" {
			return
		}
		if !strings.HasPrefix(role, "arn:") {
			role = "arn:aws:iam::" + a.cfg.Account + ":role/" + role
		}
		add("iam:PassRole", role, map[string]any{"iam:PassedToService": service})
	}
	// Code taken from S3 is read by Lambda with the caller's permissions,
	// which must allow s3:GetObject on the object; Lambda answers
	// AccessDeniedException "Your access has been denied by S3" otherwise
	// (see accessDenied).
	// https://repost.aws/knowledge-center/granular-access-lambda
	if bucket, key := functionCodeObject(c.op, p); bucket != "" {
		add("s3:GetObject", "arn:aws:s3:::"+bucket+"/"+key, map[string]any{})
	}
	switch c.op {
	case "IAM.AddRoleToInstanceProfile":
		// "The caller of this operation must be granted the PassRole
		// permission on the IAM role": the instances EC2 launches with the
		// profile act as the role.
		// https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html
		pass(p.str("RoleName"), "ec2.amazonaws.com")
	case "Lambda.CreateFunction", "Lambda.UpdateFunctionConfiguration":
		pass(p.str("Role"), "lambda.amazonaws.com")
	case "ECS.RegisterTaskDefinition":
		pass(p.str("taskRoleArn"), "ecs-tasks.amazonaws.com")
		pass(p.str("executionRoleArn"), "ecs-tasks.amazonaws.com")
	case "ECS.RunTask":
		// RunTask passes the task definition's roles (and an override's):
		// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
		family, rev, err := a.taskDefinition(p.str("taskDefinition"))
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		roles := a.taskDefs[family+":"+rev].roles
		a.mu.Unlock()
		for _, r := range roles {
			pass(r, "ecs-tasks.amazonaws.com")
		}
		if o, ok := p.json["overrides"].(map[string]any); ok {
			for _, k := range []string{"taskRoleArn", "executionRoleArn"} {
				if r, _ := o[k].(string); r != "" && !slices.Contains(roles, r) {
					pass(r, "ecs-tasks.amazonaws.com")
				}
			}
		}
	}
	return out, nil
}

// publicParameter marks the vars of an AWS public parameter, whose ARN
// names no account: arn:aws:ssm:REGION::parameter/aws/service/...
const publicParameter = "PublicParameter"

// ssmVars names the parameters of a Systems Manager request (Name, or
// GetParameters' Names). A name under /aws/ is one of AWS's public
// parameters (the ECS-optimized AMI IDs), which live in no account.
// https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-public-parameters.html
func ssmVars(p params) []vars {
	names := p.strs("Names")
	if n := p.str("Name"); n != "" {
		names = append(names, n)
	}
	var out []vars
	for _, n := range names {
		v := vars{"ParameterNameWithoutLeadingSlash": strings.TrimPrefix(n, "/")}
		if strings.HasPrefix(n, "/aws/") {
			v[publicParameter] = "yes"
		}
		out = append(out, v)
	}
	return out
}

// accountlessSSM matches a Systems Manager ARN (or ARN pattern) that names
// no account.
var accountlessSSM = regexp.MustCompile(`(arn:[^:"]*:ssm:[^:"]*):(:parameter/)`)

// publicParameterView returns the policies and resource to evaluate for
// resource: as they are, except for a public parameter, whose ARN names no
// account. The evaluator matches ARNs by a pattern that wants every field
// filled, and takes another account's resource as cross-account, so the
// empty account of the resource and of the policies' Systems Manager ARNs
// is written as the caller's account: a policy's account wildcard or empty
// account matches, as in IAM. (A policy naming the caller's own account for
// a public parameter then matches too, which IAM would not allow.)
func publicParameterView(policies []json.RawMessage, resource, account string) ([]json.RawMessage, string) {
	if !accountlessSSM.MatchString(resource) {
		return policies, resource
	}
	out := make([]json.RawMessage, len(policies))
	for i, p := range policies {
		out[i] = accountlessSSM.ReplaceAll(p, []byte("${1}:"+account+"${2}"))
	}
	return out, accountlessSSM.ReplaceAllString(resource, "${1}:"+account+"${2}")
}

// functionCodeObject is the S3 object a CreateFunction or UpdateFunctionCode
// request takes the function's code from ("" when it sends the zip itself).
func functionCodeObject(op string, p params) (bucket, key string) {
	code := p.json
	switch op {
	case "Lambda.CreateFunction":
		code, _ = p.json["Code"].(map[string]any)
	case "Lambda.UpdateFunctionCode":
	default:
		return "", ""
	}
	bucket, _ = code["S3Bucket"].(string)
	key, _ = code["S3Key"].(string)
	return bucket, key
}
