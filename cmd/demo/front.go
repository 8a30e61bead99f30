package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// The demo's port, in front of the AWS rules. kumo stands in for S3 and
// delivers a bucket's event notifications to its Lambda function itself,
// through a fixed base URL, localhost:4566 (the demo's port), with a
// request it signs for us-east-1 whatever the bucket's region
// ("Credential=kumo/19700101/us-east-1/lambda"). The rules would refuse
// that invocation of a function of another region as they refuse a
// client's. S3 invokes a function of the bucket's own region: a function
// cannot subscribe to the notifications of a bucket in another region
// (https://docs.aws.amazon.com/prescriptive-guidance/latest/patterns/subscribe-a-lambda-function-to-event-notifications-from-s3-buckets-in-different-aws-regions.html;
// destinations: https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-event-types-and-destinations.html),
// so the front re-scopes kumo's invocation of a stage function to that
// function's region before the rules see it. Every other request passes
// as it was sent.

// kumoAccessKey is the access key of the requests kumo makes to itself
// (its awsauth.ScopeHeader).
const kumoAccessKey = "kumo"

// front is the server on the demo's port.
type front struct {
	srv       *http.Server
	transport *http.Transport
}

// serveFront serves ln, forwarding to target (the rules' base URL);
// functionRegion returns a stage function's region, "" when unknown.
func serveFront(ln net.Listener, target string, functionRegion func(fn string) string, log *slog.Logger) (*front, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	// No compression, so bodies pass through as sent; enough idle
	// connections for the runners, handlers and uploaders that talk at
	// once (the default keeps 2).
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // as sent: S3 reads it
			rescopeInvocation(pr.Out, functionRegion)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away: a long poll at shutdown
			}
			log.Warn("request not forwarded to the AWS rules", "method", r.Method, "path", r.URL.Path, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	f := &front{srv: &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}, transport: tr}
	go func() { _ = f.srv.Serve(ln) }() // ends when close closes the listener
	return f, nil
}

// close stops the front and closes its connections.
func (f *front) close() error {
	err := f.srv.Close()
	f.transport.CloseIdleConnections()
	return err
}

// rescopeInvocation signs kumo's invocation of a stage function
// (POST /2015-03-31/functions/NAME/invocations) for the function's region.
func rescopeInvocation(r *http.Request, functionRegion func(fn string) string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 4 || parts[1] != "functions" || parts[3] != "invocations" {
		return
	}
	auth := r.Header.Get("Authorization")
	head, rest, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return
	}
	cred, tail, _ := strings.Cut(rest, ",")
	scope := strings.Split(cred, "/") // KEY/DATE/REGION/SERVICE/aws4_request
	if len(scope) != 5 || scope[0] != kumoAccessKey {
		return
	}
	reg := functionRegion(parts[2])
	if reg == "" || reg == scope[2] {
		return
	}
	scope[2] = reg
	auth = head + "Credential=" + strings.Join(scope, "/")
	if tail != "" {
		auth += "," + tail
	}
	r.Header.Set("Authorization", auth)
}
