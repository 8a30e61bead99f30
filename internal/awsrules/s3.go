package awsrules

import (
	"encoding/xml"
	"net/http"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// bucketOf is the bucket of a path-style S3 request (/bucket/key), the only
// style the proxy reads: emulator clients use it (testenv.S3PathStyle).
func bucketOf(r *http.Request) string {
	bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return bucket
}

// checkForeignBucket refuses this account's GetBucketTagging on another
// account's bucket: "By default, the bucket owner has this permission and
// can grant this permission to others", and S3 answers a call without
// permission with 403 AccessDenied.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketTagging.html
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
// kumo has one account, so every bucket is the caller's.
func checkForeignBucket(p *Proxy, c call) *faultproxy.APIError {
	if !p.foreign[bucketOf(c.r)] {
		return nil
	}
	return &faultproxy.APIError{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied"}
}

// createOwnedBucketInUSEast1 turns kumo's 409 BucketAlreadyOwnedByYou into
// the 200 OK S3 answers in us-east-1: "Amazon S3 returns this error in all
// AWS Regions except in the North Virginia Region. For legacy
// compatibility, if you re-create an existing bucket that you already own
// in the North Virginia Region, Amazon S3 returns 200 OK".
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
// kumo answers 409 BucketAlreadyOwnedByYou in every region.
func createOwnedBucketInUSEast1(_ *Proxy, c call, a *answer) {
	if a.status != http.StatusConflict || faultproxy.SigningRegion(c.r) != "us-east-1" {
		return
	}
	var e struct{ Code string }
	if xml.Unmarshal(a.body, &e) != nil || e.Code != "BucketAlreadyOwnedByYou" {
		return
	}
	a.status = http.StatusOK
	a.header = http.Header{"Location": {"/" + bucketOf(c.r)}}
	a.body = nil
}
