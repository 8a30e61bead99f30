package faultproxy

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// protocol is the wire protocol of a request, which decides how an error
// answer must look for the client to parse its code.
type protocol int

const (
	protoPlain    protocol = iota // not AWS (Git, Gitea's API): status and text
	protoRESTXML                  // S3
	protoRESTJSON                 // Lambda and other REST-JSON services
	protoJSON                     // X-Amz-Target services: SQS, ECS, CloudWatch Logs...
	protoQuery                    // IAM, STS: form-encoded Action=, XML ErrorResponse
	protoEC2                      // EC2 query: XML Response/Errors
)

// credentialScope returns the parts of a SigV4-signed request's credential
// scope, Credential=AKID/DATE/REGION/SERVICE/aws4_request, or nil for an
// unsigned request.
func credentialScope(r *http.Request) []string {
	cred := r.URL.Query().Get("X-Amz-Credential") // presigned URLs
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "AWS4-") {
		if _, rest, ok := strings.Cut(auth, "Credential="); ok {
			cred, _, _ = strings.Cut(rest, ",")
		}
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return nil
	}
	return parts
}

// signingService returns the service name of a SigV4-signed request's
// credential scope ("s3", "iam", "logs"...), or "" for an unsigned request.
func signingService(r *http.Request) string {
	if scope := credentialScope(r); scope != nil {
		return scope[3]
	}
	return ""
}

// SigningRegion returns the region of a SigV4-signed request's credential
// scope ("us-east-1"), or "" for an unsigned request. Some AWS answers
// depend on it: S3's CreateBucket of a bucket you own succeeds only in
// us-east-1.
func SigningRegion(r *http.Request) string {
	if scope := credentialScope(r); scope != nil {
		return scope[2]
	}
	return ""
}

func protocolOf(r *http.Request) protocol {
	svc := signingService(r)
	ct := r.Header.Get("Content-Type")
	switch {
	case r.Header.Get("X-Amz-Target") != "" || strings.HasPrefix(ct, "application/x-amz-json"):
		return protoJSON
	case svc == "s3":
		return protoRESTXML
	case svc == "ec2":
		return protoEC2
	case svc == "iam" || svc == "sts" || (svc != "" && strings.HasPrefix(ct, "application/x-www-form-urlencoded")):
		return protoQuery
	case svc != "":
		return protoRESTJSON
	}
	return protoPlain
}

// serviceLabels are the SDK's service IDs by signing name, so Operation
// reads like testenv.CallCounter's keys ("CloudWatch Logs.CreateLogGroup").
var serviceLabels = map[string]string{
	"s3": "S3", "sqs": "SQS", "iam": "IAM", "sts": "STS", "lambda": "Lambda", "ecs": "ECS",
	"logs": "CloudWatch Logs", "ec2": "EC2", "secretsmanager": "Secrets Manager", "kms": "KMS", "batch": "Batch",
	"ssm": "SSM",
}

// Operation names the request's operation: "<service>.<operation>" for AWS
// ("S3.PutObject", "SQS.CreateQueue", "Lambda.AddPermission"), "Git.<service>"
// for Git smart HTTP ("Git.upload-pack"), else "HTTP.<METHOD>". body is the
// request body (for the query protocol's Action).
func Operation(r *http.Request, body []byte) string {
	svc := signingService(r)
	label := serviceLabels[svc]
	if label == "" {
		label = svc
	}
	switch protocolOf(r) {
	case protoJSON:
		target := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(target, '.'); i >= 0 {
			target = target[i+1:]
		}
		return label + "." + target
	case protoQuery, protoEC2:
		action := r.URL.Query().Get("Action")
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") != "" {
			action = form.Get("Action")
		}
		return label + "." + action
	case protoRESTXML:
		return "S3." + s3Operation(r)
	case protoRESTJSON:
		switch svc {
		case "lambda":
			return "Lambda." + lambdaOperation(r)
		case "batch":
			return "Batch." + batchOperation(r)
		}
		return label + "." + r.Method + " " + firstSegment(r.URL.Path)
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/info/refs"):
		return "Git.info-refs"
	case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		return "Git.upload-pack"
	case strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
		return "Git.receive-pack"
	}
	return "HTTP." + r.Method
}

func firstSegment(p string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return seg
}

// s3Subresources maps a bucket sub-resource query key to the noun of its
// operations (PutBucketTagging, GetPublicAccessBlock...).
var s3Subresources = map[string]string{
	"tagging": "BucketTagging", "notification": "BucketNotificationConfiguration",
	"publicAccessBlock": "PublicAccessBlock", "encryption": "BucketEncryption",
	"versioning": "BucketVersioning", "policy": "BucketPolicy", "location": "BucketLocation",
	"lifecycle": "BucketLifecycleConfiguration", "cors": "BucketCors", "acl": "BucketAcl",
}

// s3Operation names a path-style S3 request: /bucket or /bucket/key.
func s3Operation(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	verb := map[string]string{
		http.MethodGet: "Get", http.MethodPut: "Put", http.MethodDelete: "Delete",
		http.MethodHead: "Head", http.MethodPost: "Post",
	}[r.Method]
	switch {
	case bucket == "":
		return "ListBuckets"
	case key != "":
		return verb + "Object"
	}
	for sub, noun := range s3Subresources {
		if _, ok := q[sub]; ok {
			return verb + noun
		}
	}
	switch r.Method {
	case http.MethodPut:
		return "CreateBucket"
	case http.MethodGet:
		if q.Get("list-type") == "2" {
			return "ListObjectsV2"
		}
		return "ListObjects"
	}
	return verb + "Bucket"
}

// lambdaOperation names a Lambda REST request from its method and path
// (/2015-03-31/functions/NAME/configuration ...).
func lambdaOperation(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) >= 2 && parts[1] == "tags" {
		return map[string]string{http.MethodGet: "ListTags", http.MethodPost: "TagResource", http.MethodDelete: "UntagResource"}[r.Method]
	}
	if len(parts) < 2 || parts[1] != "functions" {
		return r.Method + " " + strings.Join(parts, "/")
	}
	sub := ""
	if len(parts) >= 4 {
		sub = parts[3]
	}
	switch {
	case len(parts) == 2 && r.Method == http.MethodPost:
		return "CreateFunction"
	case len(parts) == 2:
		return "ListFunctions"
	case sub == "" && r.Method == http.MethodGet:
		return "GetFunction"
	case sub == "" && r.Method == http.MethodDelete:
		return "DeleteFunction"
	case sub == "configuration" && r.Method == http.MethodGet:
		return "GetFunctionConfiguration"
	case sub == "configuration":
		return "UpdateFunctionConfiguration"
	case sub == "code":
		return "UpdateFunctionCode"
	case sub == "policy" && r.Method == http.MethodPost:
		return "AddPermission"
	case sub == "policy" && r.Method == http.MethodGet:
		return "GetPolicy"
	case sub == "policy":
		return "RemovePermission"
	case sub == "invocations":
		return "Invoke"
	case sub == "event-invoke-config":
		return eventInvokeConfigOperation(r.Method, len(parts) >= 5 && parts[4] == "list")
	}
	return r.Method + " " + sub
}

// batchOperations names the AWS Batch operations by the last segment of
// their path: Batch is REST-JSON with one POST /v1/<operation, lowercased>
// per operation, except the tag operations on /v1/tags/{resourceArn}.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_Operations.html
var batchOperations = func() map[string]string {
	m := map[string]string{}
	for _, op := range []string{
		"CancelJob", "CreateComputeEnvironment", "CreateJobQueue", "CreateSchedulingPolicy",
		"DeleteComputeEnvironment", "DeleteJobQueue", "DeleteSchedulingPolicy", "DeregisterJobDefinition",
		"DescribeComputeEnvironments", "DescribeJobDefinitions", "DescribeJobQueues", "DescribeJobs",
		"DescribeSchedulingPolicies", "GetJobQueueSnapshot", "ListJobs", "ListSchedulingPolicies",
		"RegisterJobDefinition", "SubmitJob", "TerminateJob", "UpdateComputeEnvironment", "UpdateJobQueue",
		"UpdateSchedulingPolicy",
	} {
		m[strings.ToLower(op)] = op
	}
	return m
}()

// batchOperation names a Batch REST request from its method and path.
func batchOperation(r *http.Request) string {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		return r.Method + " " + r.URL.Path
	}
	if strings.HasPrefix(rest, "tags/") {
		return map[string]string{http.MethodGet: "ListTagsForResource", http.MethodPost: "TagResource",
			http.MethodDelete: "UntagResource"}[r.Method]
	}
	if op, ok := batchOperations[rest]; ok {
		return op
	}
	return r.Method + " " + rest
}

// eventInvokeConfigOperation names a request on a function's asynchronous
// invocation configuration (/2019-09-25/functions/NAME/event-invoke-config),
// one path for five operations told apart by method:
// https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html
func eventInvokeConfigOperation(method string, list bool) string {
	if list {
		return "ListFunctionEventInvokeConfigs"
	}
	switch method {
	case http.MethodPut:
		return "PutFunctionEventInvokeConfig"
	case http.MethodPost:
		return "UpdateFunctionEventInvokeConfig"
	case http.MethodGet:
		return "GetFunctionEventInvokeConfig"
	case http.MethodDelete:
		return "DeleteFunctionEventInvokeConfig"
	}
	return method + " event-invoke-config"
}

// faultAnswer is the error a service gives for one fault kind.
type faultAnswer struct {
	status int
	code   string
	msg    string
}

// answers holds, per protocol, what the service answers when it throttles
// and when it fails internally. The codes are those AWS sends and the SDK's
// standard retryer knows (retry.DefaultThrottleErrorCodes).
var answers = map[protocol]map[Kind]faultAnswer{
	protoRESTXML: {
		Throttle:    {http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."},
		ServerError: {http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again."},
	},
	protoRESTJSON: {
		Throttle:    {http.StatusTooManyRequests, "TooManyRequestsException", "Rate exceeded"},
		ServerError: {http.StatusInternalServerError, "ServiceException", "An internal error occurred."},
	},
	protoJSON: {
		Throttle:    {http.StatusBadRequest, "ThrottlingException", "Rate exceeded"},
		ServerError: {http.StatusInternalServerError, "InternalFailure", "An internal error occurred."},
	},
	protoQuery: {
		Throttle:    {http.StatusBadRequest, "Throttling", "Rate exceeded"},
		ServerError: {http.StatusInternalServerError, "ServiceFailure", "An internal error occurred."},
	},
	protoEC2: {
		Throttle:    {http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."},
		ServerError: {http.StatusInternalServerError, "InternalError", "An internal error has occurred."},
	},
	protoPlain: {
		Throttle:    {http.StatusTooManyRequests, "", "faultproxy: too many requests"},
		ServerError: {http.StatusInternalServerError, "", "faultproxy: internal server error"},
	},
}

// writeFault answers r with the Throttle or ServerError of its protocol.
func writeFault(w http.ResponseWriter, r *http.Request, kind Kind, id int) {
	a := answers[protocolOf(r)][kind]
	reqID := "faultproxy-" + strconv.Itoa(id)
	if kind == Throttle && protocolOf(r) == protoPlain {
		w.Header().Set("Retry-After", "1")
	}
	WriteError(w, r, APIError{Status: a.status, Code: a.code, Message: a.msg}, reqID)
}

// APIError is an error answer of an AWS service, as WriteError sends it.
type APIError struct {
	Status  int    // HTTP status
	Code    string // the code the SDK reports (smithy.APIError's ErrorCode)
	Message string
	// Type is the JSON protocol's __type when it differs from Code, else
	// "". SQS names a modeled error by its shape ("QueueDeletedRecently")
	// and sends the query-protocol Code in the X-Amzn-Query-Error header;
	// the SDK needs both to return the typed error with that code.
	Type string
	// Header holds headers the answer carries besides the protocol's own,
	// such as S3's x-amz-bucket-region on a PermanentRedirect.
	Header http.Header
}

// WriteError answers r with e in the error format of r's protocol, read
// from its signature and headers as Operation reads them, so that the AWS
// SDK parses e.Code as it would parse the service's own answer. requestID
// goes in the request-ID headers and body.
func WriteError(w http.ResponseWriter, r *http.Request, e APIError, requestID string) {
	h := w.Header()
	for k, vs := range e.Header {
		h[http.CanonicalHeaderKey(k)] = vs
	}
	h.Set("X-Amz-Request-Id", requestID)
	h.Set("X-Amzn-RequestId", requestID)
	var body string
	switch proto := protocolOf(r); proto {
	case protoRESTXML:
		h.Set("Content-Type", "application/xml")
		body = fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId><HostId>faultproxy</HostId></Error>`,
			xmlText(e.Code), xmlText(e.Message), xmlText(requestID))
	case protoRESTJSON:
		// Lambda names the error in a header; the body's Type says whose
		// fault it is.
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", e.Code)
		body = fmt.Sprintf(`{"Type":"User","message":%q}`, e.Message)
	case protoJSON:
		body = jsonError(h, r, e)
	case protoQuery:
		h.Set("Content-Type", "text/xml")
		body = fmt.Sprintf(`<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
			xmlText(e.Code), xmlText(e.Message), xmlText(requestID))
	case protoEC2:
		h.Set("Content-Type", "text/xml")
		body = fmt.Sprintf(`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
			xmlText(e.Code), xmlText(e.Message), xmlText(requestID))
	default:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		body = e.Message + "\n"
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

// jsonError sets the headers of a JSON-protocol error answer and returns
// its body.
func jsonError(h http.Header, r *http.Request, e APIError) string {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/x-amz-json") {
		ct = "application/x-amz-json-1.1"
	}
	h.Set("Content-Type", ct)
	// SQS's JSON protocol is query-compatible: the SDK reports the code
	// of this header, and whose fault it is from the part after ";".
	fault := "Sender"
	if e.Status >= 500 {
		fault = "Receiver"
	}
	h.Set("X-Amzn-Query-Error", e.Code+";"+fault)
	typ := e.Type
	if typ == "" {
		typ = e.Code
	}
	return fmt.Sprintf(`{"__type":%q,"message":%q}`, typ, e.Message)
}

// xmlText escapes s for an XML element's text.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
