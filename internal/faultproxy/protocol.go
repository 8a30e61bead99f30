package faultproxy

import (
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

// signingService returns the service name of a SigV4-signed request's
// credential scope ("s3", "iam", "logs"...), or "" for an unsigned request.
// The scope reads Credential=AKID/DATE/REGION/SERVICE/aws4_request.
func signingService(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential") // presigned URLs
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "AWS4-") {
		if _, rest, ok := strings.Cut(auth, "Credential="); ok {
			cred, _, _ = strings.Cut(rest, ",")
		}
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return ""
	}
	return parts[3]
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
	"logs": "CloudWatch Logs", "ec2": "EC2", "secretsmanager": "Secrets Manager",
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
		if svc == "lambda" {
			return "Lambda." + lambdaOperation(r)
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
	}
	return r.Method + " " + sub
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
	proto := protocolOf(r)
	a := answers[proto][kind]
	reqID := "faultproxy-" + strconv.Itoa(id)
	h := w.Header()
	h.Set("X-Amz-Request-Id", reqID)
	h.Set("X-Amzn-RequestId", reqID)
	var body string
	switch proto {
	case protoRESTXML:
		h.Set("Content-Type", "application/xml")
		body = fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId><HostId>faultproxy</HostId></Error>`,
			a.code, a.msg, reqID)
	case protoRESTJSON:
		// Lambda names the error in a header; the body's Type says whose
		// fault it is.
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", a.code)
		body = fmt.Sprintf(`{"Type":"User","message":%q}`, a.msg)
	case protoJSON:
		ct := r.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "application/x-amz-json") {
			ct = "application/x-amz-json-1.1"
		}
		h.Set("Content-Type", ct)
		// SQS's JSON protocol also reads the code from this header.
		h.Set("X-Amzn-Query-Error", a.code+";Sender")
		body = fmt.Sprintf(`{"__type":%q,"message":%q}`, a.code, a.msg)
	case protoQuery:
		h.Set("Content-Type", "text/xml")
		body = fmt.Sprintf(`<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
			a.code, a.msg, reqID)
	case protoEC2:
		h.Set("Content-Type", "text/xml")
		body = fmt.Sprintf(`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
			a.code, a.msg, reqID)
	default:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		if kind == Throttle {
			h.Set("Retry-After", "1")
		}
		body = a.msg + "\n"
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(a.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}
