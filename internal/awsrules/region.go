package awsrules

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// Regions. kumo ignores them: any region sees every resource and every ARN
// it answers says us-east-1. AWS keeps each regional resource in the region
// whose endpoint created it, and a request signed for another region does
// not find it ("Amazon ECS clusters are Region specific", a queue URL names
// its region, a bucket answers only at its region's endpoint). The proxy
// remembers the region of each resource created through it (the SigV4
// signing region of the request: the SDK signs for the region whose
// endpoint it calls) and refuses, with the error of the service, a request
// of another region that names it; the Describe calls the product reads to
// find its resources list only the caller's region.
// https://docs.aws.amazon.com/general/latest/gr/rande.html
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html

// defaultRegion is the region of a resource the proxy never saw created
// (made before the proxy started, or by kumo itself): kumo's own.
const defaultRegion = "us-east-1"

// kumoAccount is the account kumo answers for every caller.
const kumoAccount = "000000000000"

// resKind is a kind of regional resource; names are unique per kind and
// region (EC2 IDs are unique everywhere).
type resKind string

const (
	kindBucket   resKind = "bucket"
	kindQueue    resKind = "queue"
	kindCluster  resKind = "cluster"
	kindTaskDef  resKind = "task definition family"
	kindEC2      resKind = "ec2" // a VPC, subnet or security group, by ID
	kindLogGroup resKind = "log group"
	kindFunction resKind = "function"
)

type resKey struct {
	kind resKind
	name string
}

// noteRegion remembers that k exists in region.
func (p *Proxy) noteRegion(k resKey, region string) {
	if k.name == "" || region == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.homes == nil {
		p.homes = map[resKey]map[string]bool{}
	}
	if p.homes[k] == nil {
		p.homes[k] = map[string]bool{}
	}
	p.homes[k][region] = true
}

// forgetRegion remembers that k no longer exists in region. A resource
// deleted everywhere stays known, with no region: the target answers that
// it does not exist, as AWS would.
func (p *Proxy) forgetRegion(k resKey, region string) {
	if k.name == "" || region == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.homes == nil {
		p.homes = map[resKey]map[string]bool{}
	}
	if set, ok := p.homes[k]; ok {
		delete(set, region)
		return
	}
	p.homes[k] = map[string]bool{}
}

// inRegion reports whether a request signed for region may use k. An
// unsigned request (region "") is not judged.
func (p *Proxy) inRegion(k resKey, region string) bool {
	if k.name == "" || region == "" {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	set, ok := p.homes[k]
	switch {
	case !ok:
		return region == defaultRegion
	case len(set) == 0:
		return true // deleted: the target says so itself
	}
	return set[region]
}

// known reports whether the proxy saw k created (or deleted).
func (p *Proxy) known(k resKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.homes[k]
	return ok
}

// bucketExists asks the target whether bucket exists (HEAD /bucket): a
// bucket the proxy did not see created is in us-east-1 if it exists at
// all.
func (p *Proxy) bucketExists(c call, bucket string) bool {
	return p.s3Exists(c, url.PathEscape(bucket))
}

// objectExists asks the target whether the object exists (HEAD
// /bucket/key).
func (p *Proxy) objectExists(c call, bucket, key string) bool {
	path := url.PathEscape(bucket)
	for _, seg := range strings.Split(key, "/") {
		path += "/" + url.PathEscape(seg)
	}
	return p.s3Exists(c, path)
}

// s3Exists asks the target whether the bucket or object at path (escaped)
// exists, with the call's credentials; when it cannot tell, it says yes.
func (p *Proxy) s3Exists(c call, path string) bool {
	base := strings.TrimSuffix(p.target.String(), "/")
	req, err := http.NewRequestWithContext(c.r.Context(), http.MethodHead, base+"/"+path, nil)
	if err != nil {
		return true
	}
	req.Header.Set("Authorization", c.r.Header.Get("Authorization"))
	resp, err := p.opts.Transport.RoundTrip(req)
	if err != nil {
		return true // cannot tell: judge it as existing
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// homeOf is a region k exists in, for an answer that names it.
func (p *Proxy) homeOf(k resKey) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range slices.Sorted(mapKeys(p.homes[k])) {
		return r
	}
	return defaultRegion
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// regionOf is the signing region of c's request.
func regionOf(c call) string { return faultproxy.SigningRegion(c.r) }

// ok2xx reports whether the target accepted the call.
func ok2xx(a *answer) bool { return a.status >= 200 && a.status < 300 }

// init adds the region rules to the checks and observers of awsrules.go.
// The region check of an operation runs first: AWS looks the resource up
// before it applies any other rule to it.
func init() {
	for op, cs := range regionChecks() {
		checks[op] = append(cs, checks[op]...)
	}
	for op, os := range regionObservers {
		observers[op] = append(os, observers[op]...)
	}
}

func regionChecks() map[string][]check {
	m := map[string][]check{}
	add := func(c check, ops ...string) {
		for _, op := range ops {
			m[op] = append(m[op], c)
		}
	}
	// Every S3 operation on a bucket, except GetBucketLocation, which
	// answers from any region (it is how a client finds the region) and
	// CreateBucket, which makes the bucket where it is sent.
	add(notePreexistingCluster, "ECS.CreateCluster")
	add(checkBucketRegion, "S3.GetObject", "S3.PutObject", "S3.HeadObject", "S3.DeleteObject", "S3.PostObject",
		"S3.HeadBucket", "S3.DeleteBucket", "S3.PostBucket", "S3.ListObjects", "S3.ListObjectsV2")
	for _, noun := range []string{"BucketTagging", "BucketNotificationConfiguration", "PublicAccessBlock",
		"BucketEncryption", "BucketVersioning", "BucketPolicy", "BucketLifecycleConfiguration", "BucketCors", "BucketAcl"} {
		add(checkBucketRegion, "S3.Get"+noun, "S3.Put"+noun, "S3.Delete"+noun)
	}
	add(checkQueueRegion, "SQS.GetQueueUrl", "SQS.SendMessage", "SQS.SendMessageBatch", "SQS.ReceiveMessage",
		"SQS.DeleteMessage", "SQS.DeleteMessageBatch", "SQS.ChangeMessageVisibility", "SQS.ChangeMessageVisibilityBatch",
		"SQS.GetQueueAttributes", "SQS.SetQueueAttributes", "SQS.DeleteQueue", "SQS.PurgeQueue",
		"SQS.ListQueueTags", "SQS.TagQueue", "SQS.UntagQueue")
	add(checkECSRegion, "ECS.RunTask", "ECS.StartTask", "ECS.ListTasks", "ECS.DescribeTasks", "ECS.StopTask",
		"ECS.DeleteCluster", "ECS.UpdateCluster", "ECS.ListServices", "ECS.DescribeServices", "ECS.CreateService",
		"ECS.UpdateService", "ECS.DeleteService", "ECS.DescribeTaskDefinition", "ECS.DeregisterTaskDefinition")
	add(checkEC2Region, "EC2.DescribeVpcs", "EC2.DescribeSubnets", "EC2.DescribeSecurityGroups",
		"EC2.CreateSubnet", "EC2.CreateSecurityGroup", "EC2.DeleteVpc", "EC2.DeleteSubnet", "EC2.DeleteSecurityGroup",
		"EC2.AuthorizeSecurityGroupIngress", "EC2.AuthorizeSecurityGroupEgress")
	add(checkLogGroupRegion, "CloudWatch Logs.CreateLogStream", "CloudWatch Logs.PutLogEvents",
		"CloudWatch Logs.DeleteLogGroup", "CloudWatch Logs.PutRetentionPolicy", "CloudWatch Logs.DeleteRetentionPolicy",
		"CloudWatch Logs.DescribeLogStreams", "CloudWatch Logs.GetLogEvents", "CloudWatch Logs.FilterLogEvents",
		"CloudWatch Logs.TagLogGroup", "CloudWatch Logs.UntagLogGroup", "CloudWatch Logs.ListTagsLogGroup",
		"CloudWatch Logs.ListTagsForResource", "CloudWatch Logs.TagResource", "CloudWatch Logs.UntagResource")
	add(checkFunctionRegion, "Lambda.GetFunction", "Lambda.GetFunctionConfiguration", "Lambda.UpdateFunctionConfiguration",
		"Lambda.UpdateFunctionCode", "Lambda.DeleteFunction", "Lambda.AddPermission", "Lambda.GetPolicy",
		"Lambda.RemovePermission", "Lambda.Invoke", "Lambda.PutFunctionEventInvokeConfig", "Lambda.UpdateFunctionEventInvokeConfig",
		"Lambda.GetFunctionEventInvokeConfig", "Lambda.DeleteFunctionEventInvokeConfig", "Lambda.ListFunctionEventInvokeConfigs")
	add(checkFunctionCodeObject, "Lambda.CreateFunction", "Lambda.UpdateFunctionCode")
	return m
}

var regionObservers = map[string][]observe{
	"S3.CreateBucket":                   {noteBucketRegion},
	"S3.DeleteBucket":                   {forgetBucketRegion},
	"SQS.CreateQueue":                   {noteQueueRegion},
	"SQS.DeleteQueue":                   {forgetQueueRegion},
	"ECS.CreateCluster":                 {noteClusterRegion},
	"ECS.DeleteCluster":                 {forgetClusterRegion},
	"ECS.RegisterTaskDefinition":        {noteTaskDefRegion},
	"ECS.DescribeClusters":              {describeClustersInRegion},
	"EC2.CreateVpc":                     {noteEC2Region("vpcId")},
	"EC2.CreateSubnet":                  {noteEC2Region("subnetId")},
	"EC2.CreateSecurityGroup":           {noteEC2Region("groupId")},
	"EC2.DescribeVpcs":                  {listEC2InRegion("vpcSet", "vpcId")},
	"EC2.DescribeSubnets":               {listEC2InRegion("subnetSet", "subnetId")},
	"EC2.DescribeSecurityGroups":        {listEC2InRegion("securityGroupInfo", "groupId")},
	"CloudWatch Logs.CreateLogGroup":    {noteLogGroupRegion},
	"CloudWatch Logs.DeleteLogGroup":    {forgetLogGroupRegion},
	"CloudWatch Logs.DescribeLogGroups": {describeLogGroupsInRegion},
	"Lambda.CreateFunction":             {noteFunctionRegion},
	"Lambda.DeleteFunction":             {forgetFunctionRegion},
}

// --- S3 ---

// checkBucketRegion refuses a request for a bucket of another region the
// way S3 does for a path-style request to a regional endpoint: 301
// PermanentRedirect, "The bucket you are attempting to access must be
// addressed using the specified endpoint", with the bucket's region in the
// x-amz-bucket-region header. (A request to the global endpoint
// s3.amazonaws.com signed for the wrong region gets 400
// AuthorizationHeaderMalformed instead; the SDK calls the regional
// endpoint s3.<region>.amazonaws.com.)
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (PermanentRedirect)
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html (x-amz-bucket-region)
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingRouting.html
func checkBucketRegion(p *Proxy, c call) *faultproxy.APIError {
	k := resKey{kindBucket, bucketOf(c.r)}
	if p.inRegion(k, regionOf(c)) || !p.known(k) && !p.bucketExists(c, k.name) {
		// A bucket that exists nowhere is NoSuchBucket from every region:
		// the target says so.
		return nil
	}
	return &faultproxy.APIError{
		Status:  http.StatusMovedPermanently,
		Code:    "PermanentRedirect",
		Message: "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.",
		Header:  http.Header{"X-Amz-Bucket-Region": {p.homeOf(k)}},
	}
}

// noteBucketRegion remembers a new bucket's region: that of the endpoint
// it was created at (a LocationConstraint naming another region is
// refused by S3 with IllegalLocationConstraintException).
func noteBucketRegion(p *Proxy, c call, a *answer) {
	if a.status == http.StatusOK {
		p.noteRegion(resKey{kindBucket, bucketOf(c.r)}, regionOf(c))
	}
}

func forgetBucketRegion(p *Proxy, c call, a *answer) {
	if ok2xx(a) {
		// A bucket is in one region: once deleted it is nowhere.
		k := resKey{kindBucket, bucketOf(c.r)}
		p.forgetRegion(k, p.homeOf(k))
	}
}

// --- SQS ---

// checkQueueRegion refuses a call on a queue of another region with the
// error SQS gives for a queue that does not exist: queues are regional and
// their URL names the region's endpoint.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_GetQueueUrl.html
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-queue-message-identifiers.html
func checkQueueRegion(p *Proxy, c call) *faultproxy.APIError {
	req, ok := decodeSQS(c.body)
	if !ok {
		return nil
	}
	name := req.QueueName
	if req.QueueURL != "" {
		name = queueName(req.QueueURL)
	}
	if p.inRegion(resKey{kindQueue, name}, regionOf(c)) {
		return nil
	}
	return &faultproxy.APIError{
		Status:  http.StatusBadRequest,
		Code:    "AWS.SimpleQueueService.NonExistentQueue",
		Type:    "QueueDoesNotExist",
		Message: "The specified queue does not exist.",
	}
}

func noteQueueRegion(p *Proxy, c call, a *answer) {
	if req, ok := decodeSQS(c.body); ok && ok2xx(a) {
		p.noteRegion(resKey{kindQueue, req.QueueName}, regionOf(c))
	}
}

func forgetQueueRegion(p *Proxy, c call, a *answer) {
	if req, ok := decodeSQS(c.body); ok && ok2xx(a) {
		p.forgetRegion(resKey{kindQueue, queueName(req.QueueURL)}, regionOf(c))
	}
}

// --- ECS ---

// ecsRequest holds the fields of the ECS requests the region rules read.
type ecsRequest struct {
	Cluster              string
	ClusterName          string
	Clusters             []string
	TaskDefinition       string
	Family               string
	NetworkConfiguration struct {
		AwsvpcConfiguration struct {
			Subnets        []string
			SecurityGroups []string
		}
	}
}

// ecsClusterName is the cluster of a request: a name or an ARN
// (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME); none is "default".
func ecsClusterName(s string) string {
	if s == "" {
		return "default"
	}
	if _, name, ok := strings.Cut(s, ":cluster/"); ok {
		return name
	}
	return s
}

// taskDefFamily is the family of a task definition given as FAMILY,
// FAMILY:REVISION or its ARN (…:task-definition/FAMILY:REVISION).
func taskDefFamily(s string) string {
	if _, rest, ok := strings.Cut(s, ":task-definition/"); ok {
		s = rest
	}
	family, _, _ := strings.Cut(s, ":")
	return family
}

// checkECSRegion refuses an ECS call naming a cluster, task definition,
// subnet or security group of another region: "Amazon ECS clusters are
// Region specific" (ClusterNotFoundException), a task definition is looked
// up in the caller's region (ClientException), and RunTask's awsvpc
// network must be in the task's region (InvalidParameterException, with
// the EC2 error ECS got).
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html#API_RunTask_Errors
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTaskDefinition.html
func checkECSRegion(p *Proxy, c call) *faultproxy.APIError {
	var req ecsRequest
	if json.Unmarshal(c.body, &req) != nil {
		return nil
	}
	region := regionOf(c)
	op := strings.TrimPrefix(c.op, "ECS.")
	if op != "DescribeTaskDefinition" && op != "DeregisterTaskDefinition" &&
		!p.inRegion(resKey{kindCluster, ecsClusterName(req.Cluster)}, region) {
		return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "ClusterNotFoundException", Message: "Cluster not found."}
	}
	if req.TaskDefinition != "" && !p.inRegion(resKey{kindTaskDef, taskDefFamily(req.TaskDefinition)}, region) {
		return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "ClientException", Message: "Unable to describe task definition."}
	}
	vpc := req.NetworkConfiguration.AwsvpcConfiguration
	for _, id := range vpc.Subnets {
		if !p.inRegion(resKey{kindEC2, id}, region) {
			return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidParameterException",
				Message: "Error retrieving subnet information for [" + id + "]: The subnet ID '" + id + "' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidSubnetID.NotFound)"}
		}
	}
	for _, id := range vpc.SecurityGroups {
		if !p.inRegion(resKey{kindEC2, id}, region) {
			return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidParameterException",
				Message: "Error retrieving security group information for [" + id + "]: The security group '" + id + "' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidGroup.NotFound)"}
		}
	}
	return nil
}

// notePreexistingCluster, before a CreateCluster in another region than
// us-east-1, notes a same-named cluster the target already holds, which the
// proxy never saw created, as us-east-1's (the rule for resources made
// before it). kumo keeps one cluster per name for every region and answers
// the create with the existing one; AWS would make a second. Without the
// note, the create would move the name to the new region, and us-east-1's
// cluster would seem gone.
func notePreexistingCluster(p *Proxy, c call) *faultproxy.APIError {
	var req ecsRequest
	region := regionOf(c)
	if json.Unmarshal(c.body, &req) != nil || region == "" || region == defaultRegion {
		return nil
	}
	k := resKey{kindCluster, ecsClusterName(req.ClusterName)}
	if p.known(k) || !p.clusterExists(c, k.name) {
		return nil
	}
	p.noteRegion(k, defaultRegion)
	return nil
}

// clusterExists asks the target whether an ACTIVE cluster has name.
func (p *Proxy) clusterExists(c call, name string) bool {
	body, _ := json.Marshal(map[string][]string{"clusters": {name}})
	u := *p.target
	req, err := http.NewRequestWithContext(c.r.Context(), http.MethodPost, u.String()+"/", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DescribeClusters")
	req.Header.Set("Authorization", c.r.Header.Get("Authorization"))
	resp, err := p.opts.Transport.RoundTrip(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out struct {
		Clusters []struct{ Status string } `json:"clusters"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return false
	}
	return len(out.Clusters) > 0 && out.Clusters[0].Status == "ACTIVE"
}

func noteClusterRegion(p *Proxy, c call, a *answer) {
	var req ecsRequest
	if json.Unmarshal(c.body, &req) == nil && ok2xx(a) {
		p.noteRegion(resKey{kindCluster, ecsClusterName(req.ClusterName)}, regionOf(c))
	}
}

func forgetClusterRegion(p *Proxy, c call, a *answer) {
	var req ecsRequest
	if json.Unmarshal(c.body, &req) == nil && ok2xx(a) {
		p.forgetRegion(resKey{kindCluster, ecsClusterName(req.Cluster)}, regionOf(c))
	}
}

func noteTaskDefRegion(p *Proxy, c call, a *answer) {
	var req ecsRequest
	if json.Unmarshal(c.body, &req) == nil && ok2xx(a) {
		p.noteRegion(resKey{kindTaskDef, req.Family}, regionOf(c))
	}
}

// describeClustersInRegion moves the clusters of other regions from the
// answer's clusters to its failures, reason MISSING, as ECS reports a
// cluster it does not have.
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Failure.html
func describeClustersInRegion(p *Proxy, c call, a *answer) {
	var out map[string]json.RawMessage
	var clusters []json.RawMessage
	if a.status != http.StatusOK || json.Unmarshal(a.body, &out) != nil || json.Unmarshal(out["clusters"], &clusters) != nil {
		return
	}
	var failures []json.RawMessage
	if f, ok := out["failures"]; ok && json.Unmarshal(f, &failures) != nil {
		return
	}
	kept := []json.RawMessage{}
	for _, raw := range clusters {
		var cl struct{ ClusterName, ClusterArn string }
		if json.Unmarshal(raw, &cl) != nil || p.inRegion(resKey{kindCluster, cl.ClusterName}, regionOf(c)) {
			kept = append(kept, raw)
			continue
		}
		f, _ := json.Marshal(map[string]string{"arn": cl.ClusterArn, "reason": "MISSING"})
		failures = append(failures, f)
	}
	if len(kept) == len(clusters) {
		return
	}
	out["clusters"], _ = json.Marshal(kept)
	out["failures"], _ = json.Marshal(failures)
	if b, err := json.Marshal(out); err == nil {
		a.body = b
	}
}

// --- EC2 ---

// checkEC2Region refuses an EC2 call naming a VPC, subnet or security
// group of another region with EC2's not-found error for it: EC2
// resources exist in one region.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
func checkEC2Region(p *Proxy, c call) *faultproxy.APIError {
	form, err := url.ParseQuery(string(c.body))
	if err != nil {
		return nil
	}
	region := regionOf(c)
	for key, vs := range form {
		field, _, _ := strings.Cut(key, ".") // SubnetId.1, GroupId.1, VpcId.1, VpcId
		var e faultproxy.APIError
		switch field {
		case "VpcId":
			e = faultproxy.APIError{Code: "InvalidVpcID.NotFound", Message: "The vpc ID '%s' does not exist"}
		case "SubnetId":
			e = faultproxy.APIError{Code: "InvalidSubnetID.NotFound", Message: "The subnet ID '%s' does not exist"}
		case "GroupId":
			e = faultproxy.APIError{Code: "InvalidGroup.NotFound", Message: "The security group '%s' does not exist"}
		default:
			continue
		}
		for _, id := range vs {
			if !p.inRegion(resKey{kindEC2, id}, region) {
				e.Status = http.StatusBadRequest
				e.Message = strings.Replace(e.Message, "%s", id, 1)
				return &e
			}
		}
	}
	return nil
}

// noteEC2Region remembers the region of the resource whose ID an EC2
// Create answer gives in element idTag.
func noteEC2Region(idTag string) observe {
	return func(p *Proxy, c call, a *answer) {
		if a.status != http.StatusOK {
			return
		}
		d := xml.NewDecoder(bytes.NewReader(a.body))
		for {
			tok, err := d.Token()
			if err != nil {
				return
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == idTag {
				var id string
				if d.DecodeElement(&id, &se) == nil {
					p.noteRegion(resKey{kindEC2, strings.TrimSpace(id)}, regionOf(c))
				}
				return
			}
		}
	}
}

// listEC2InRegion drops from an EC2 Describe answer the items of list
// whose idTag names a resource of another region.
func listEC2InRegion(list, idTag string) observe {
	return func(p *Proxy, c call, a *answer) {
		if a.status != http.StatusOK {
			return
		}
		region := regionOf(c)
		a.body = dropXMLItems(a.body, list, idTag, func(id string) bool {
			return p.inRegion(resKey{kindEC2, id}, region)
		})
	}
}

// dropXMLItems removes, byte for byte, the <item> children of the first
// element named list whose idTag child keep rejects, leaving the rest of
// body as it was (the decoder's offsets mark each item).
func dropXMLItems(body []byte, list, idTag string, keep func(id string) bool) []byte {
	d := xml.NewDecoder(bytes.NewReader(body))
	type span struct{ from, to int64 }
	var cuts []span
	depth, listDepth := 0, -1
	itemFrom, inID, id := int64(-1), false, ""
	for listDepth != -2 {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case listDepth == -1 && t.Name.Local == list:
				listDepth = depth
			case listDepth > 0 && depth == listDepth+1 && t.Name.Local == "item":
				itemFrom, id = off, ""
			case itemFrom >= 0 && depth == listDepth+2 && t.Name.Local == idTag:
				inID = true
			}
		case xml.CharData:
			if inID {
				id += string(t)
			}
		case xml.EndElement:
			inID = false
			switch {
			case itemFrom >= 0 && depth == listDepth+1:
				if !keep(strings.TrimSpace(id)) {
					cuts = append(cuts, span{itemFrom, d.InputOffset()})
				}
				itemFrom = -1
			case depth == listDepth:
				listDepth = -2 // done
			}
			depth--
		}
	}
	if len(cuts) == 0 {
		return body
	}
	var b bytes.Buffer
	last := int64(0)
	for _, s := range cuts {
		b.Write(body[last:s.from])
		last = s.to
	}
	b.Write(body[last:])
	return b.Bytes()
}

// --- CloudWatch Logs ---

// logGroupName is the log group of a CloudWatch Logs request: its
// logGroupName, or the name in its logGroupIdentifier or resourceArn
// (arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]).
func logGroupName(body []byte) string {
	var req struct{ LogGroupName, LogGroupIdentifier, ResourceArn string }
	if json.Unmarshal(body, &req) != nil {
		return ""
	}
	if req.LogGroupName != "" {
		return req.LogGroupName
	}
	id := req.LogGroupIdentifier
	if id == "" {
		id = req.ResourceArn
	}
	if _, name, ok := strings.Cut(id, ":log-group:"); ok {
		return strings.TrimSuffix(name, ":*")
	}
	return id
}

// checkLogGroupRegion refuses a call on a log group of another region
// with the error CloudWatch Logs gives for a missing one.
// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html#API_PutRetentionPolicy_Errors
func checkLogGroupRegion(p *Proxy, c call) *faultproxy.APIError {
	if p.inRegion(resKey{kindLogGroup, logGroupName(c.body)}, regionOf(c)) {
		return nil
	}
	return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "ResourceNotFoundException", Message: "The specified log group does not exist."}
}

func noteLogGroupRegion(p *Proxy, c call, a *answer) {
	if ok2xx(a) {
		p.noteRegion(resKey{kindLogGroup, logGroupName(c.body)}, regionOf(c))
	}
}

func forgetLogGroupRegion(p *Proxy, c call, a *answer) {
	if ok2xx(a) {
		p.forgetRegion(resKey{kindLogGroup, logGroupName(c.body)}, regionOf(c))
	}
}

// describeLogGroupsInRegion drops the log groups of other regions from a
// DescribeLogGroups answer.
func describeLogGroupsInRegion(p *Proxy, c call, a *answer) {
	var out map[string]json.RawMessage
	var groups []json.RawMessage
	if a.status != http.StatusOK || json.Unmarshal(a.body, &out) != nil || json.Unmarshal(out["logGroups"], &groups) != nil {
		return
	}
	kept := []json.RawMessage{}
	for _, raw := range groups {
		var g struct{ LogGroupName string }
		if json.Unmarshal(raw, &g) != nil || p.inRegion(resKey{kindLogGroup, g.LogGroupName}, regionOf(c)) {
			kept = append(kept, raw)
		}
	}
	if len(kept) == len(groups) {
		return
	}
	out["logGroups"], _ = json.Marshal(kept)
	if b, err := json.Marshal(out); err == nil {
		a.body = b
	}
}

// --- Lambda ---

// functionName is a function name as Lambda accepts it (NAME, NAME:QUALIFIER,
// ACCOUNT:function:NAME or the ARN), reduced to NAME.
func functionName(s string) string {
	if _, rest, ok := strings.Cut(s, "function:"); ok {
		s = rest
	}
	name, _, _ := strings.Cut(s, ":")
	return name
}

// pathFunction is the function of a Lambda REST path
// (/2015-03-31/functions/NAME/...).
func pathFunction(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 3 || parts[1] != "functions" {
		return ""
	}
	return functionName(parts[2])
}

// checkFunctionRegion refuses a call on a function of another region with
// Lambda's 404 ResourceNotFoundException.
// https://docs.aws.amazon.com/lambda/latest/api/API_GetFunction.html#API_GetFunction_Errors
func checkFunctionRegion(p *Proxy, c call) *faultproxy.APIError {
	name, region := pathFunction(c.r), regionOf(c)
	if p.inRegion(resKey{kindFunction, name}, region) {
		return nil
	}
	return &faultproxy.APIError{Status: http.StatusNotFound, Code: "ResourceNotFoundException",
		Message: "Function not found: arn:aws:lambda:" + region + ":" + kumoAccount + ":function:" + name}
}

// checkFunctionCodeObject refuses code taken from an S3 object Lambda
// cannot read: a bucket of another region than the function's ("An Amazon
// S3 bucket in the same AWS Region as your function"), or a bucket or key
// that does not exist. kumo stores any S3Bucket and S3Key without looking.
// Lambda answers 400 InvalidParameterValueException with S3's error in
// its message.
// https://docs.aws.amazon.com/lambda/latest/api/API_FunctionCode.html
// https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html#API_CreateFunction_Errors
func checkFunctionCodeObject(p *Proxy, c call) *faultproxy.APIError {
	bucket, key := functionCodeObject(c.op, readParams(c))
	if bucket == "" {
		return nil
	}
	refuse := func(code, message string) *faultproxy.APIError {
		return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidParameterValueException",
			Message: "Error occurred while GetObject. S3 Error Code: " + code + ". S3 Error Message: " + message}
	}
	k := resKey{kindBucket, bucket}
	switch {
	case !p.bucketExists(c, bucket):
		return refuse("NoSuchBucket", "The specified bucket does not exist")
	case !p.inRegion(k, regionOf(c)):
		return refuse("PermanentRedirect", "The bucket is in this region: "+p.homeOf(k)+". Please use this region to retry the request")
	case !p.objectExists(c, bucket, key):
		return refuse("NoSuchKey", "The specified key does not exist.")
	}
	return nil
}

func noteFunctionRegion(p *Proxy, c call, a *answer) {
	var req struct{ FunctionName string }
	if json.Unmarshal(c.body, &req) == nil && ok2xx(a) {
		p.noteRegion(resKey{kindFunction, functionName(req.FunctionName)}, regionOf(c))
	}
}

func forgetFunctionRegion(p *Proxy, c call, a *answer) {
	if ok2xx(a) {
		p.forgetRegion(resKey{kindFunction, pathFunction(c.r)}, regionOf(c))
	}
}

// --- ARNs ---

// arnRegion matches the start of a regional ARN up to its region:
// arn:aws:SERVICE:REGION:.
var arnRegion = regexp.MustCompile(`arn:aws:([a-z0-9-]+):([a-z]{2}(?:-[a-z]+)+-[0-9]+):`)

// rewritesARNs reports whether the ARNs of c's request and answer are
// translated between the signing region and kumo's, and the region. Not
// for global services (IAM, STS: their ARNs have no region) nor for S3,
// whose ARNs have none either and whose bodies are the user's data.
func rewritesARNs(c call) (string, bool) {
	region := regionOf(c)
	svc, _, _ := strings.Cut(c.op, ".")
	switch {
	case region == "" || region == defaultRegion:
		return "", false
	case svc == "S3" || svc == "IAM" || svc == "STS":
		return "", false
	}
	return region, true
}

// answerARNsInRegion rewrites "arn:aws:<svc>:us-east-1:" to the signing
// region in an answer of a regional service. kumo writes us-east-1 into
// every ARN it makes, whatever the region called; AWS names the region the
// resource lives in, and clients build on those ARNs (IAM policy
// resources, SourceArn conditions, ListTagsForResource). Without this a
// client in eu-west-1 would see, and keep, ARNs AWS never gives it.
func answerARNsInRegion(c call, a *answer) {
	region, ok := rewritesARNs(c)
	if !ok {
		return
	}
	a.body = arnRegion.ReplaceAllFunc(a.body, func(m []byte) []byte {
		sub := arnRegion.FindSubmatch(m)
		if string(sub[2]) != defaultRegion {
			return m
		}
		return []byte("arn:aws:" + string(sub[1]) + ":" + region + ":")
	})
}

// requestARNsToKumo is the inverse of answerARNsInRegion for what a client
// sends: ARNs of the signing region, which kumo knows under us-east-1,
// are rewritten back (in the body and the URL path) so kumo finds them.
// ARNs of any other region are left as they are: kumo does not find them,
// as AWS would not.
func requestARNsToKumo(c call, body []byte) []byte {
	region, ok := rewritesARNs(c)
	if !ok {
		return body
	}
	re := regexp.MustCompile(`arn:aws:([a-z0-9-]+):` + regexp.QuoteMeta(region) + `:`)
	to := "arn:aws:${1}:" + defaultRegion + ":"
	if p := re.ReplaceAllString(c.r.URL.Path, to); p != c.r.URL.Path {
		c.r.URL.Path, c.r.URL.RawPath = p, ""
	}
	return re.ReplaceAll(body, []byte(to))
}
