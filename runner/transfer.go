package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// transfer moves objects between S3 and local files with the SDK's
// transfer manager: ranged GETs in parallel, written at their offsets into
// the file, and multipart uploads read from the file part by part, so
// memory stays bounded by (Concurrency+1)*PartSize whatever the object size.
type transfer struct {
	tm *transfermanager.Client
}

func newTransfer(client *s3.Client, c Config) *transfer {
	return &transfer{tm: transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = c.PartSize
		o.Concurrency = c.Concurrency
		// The upload's first read buffers up to the threshold in memory:
		// one part's worth keeps the bound above.
		o.MultipartUploadThreshold = c.PartSize
		// Byte ranges rather than part numbers: objects uploaded in one PUT
		// have a single part, and ranges parallelize any object.
		o.GetObjectType = tmtypes.GetObjectRanges
	})}
}

// download writes the object bucket/key into f and returns its size.
func (t *transfer) download(ctx context.Context, bucket, key string, f *os.File) (int64, error) {
	out, err := t.tm.DownloadObject(ctx, &transfermanager.DownloadObjectInput{
		Bucket:   aws.String(bucket),
		Key:      aws.String(key),
		WriterAt: f,
	})
	if err != nil {
		return 0, fmt.Errorf("download s3://%s/%s: %w", bucket, key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// upload writes the file src to bucket/key unless that object exists
// (If-None-Match: *). It returns the bytes sent, or duplicate == true when
// the object already existed: a result is written once, so a message
// delivered twice cannot overwrite the first run's result.
func (t *transfer) upload(ctx context.Context, src, bucket, key string, metadata map[string]string) (n int64, duplicate bool, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, false, fmt.Errorf("open result: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("open result: %w", err)
	}
	in := &transfermanager.UploadObjectInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String(key),
		Body:        f, // an *os.File: read part by part, never whole
		IfNoneMatch: aws.String("*"),
		Metadata:    metadata,
	}
	if len(key) > 4 && key[len(key)-4:] == ".zip" {
		in.ContentType = aws.String("application/zip")
	}
	_, err = t.tm.UploadObject(ctx, in)
	if isPreconditionFailed(err) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("upload s3://%s/%s: %w", bucket, key, err)
	}
	return fi.Size(), false, nil
}

// isPreconditionFailed reports S3's answer to a conditional write whose
// condition failed: HTTP 412, code PreconditionFailed. For a multipart
// upload it comes from CompleteMultipartUpload, wrapped by the transfer
// manager.
func isPreconditionFailed(err error) bool {
	if err == nil {
		return false
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() == http.StatusPreconditionFailed {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed"
}

// apiSummary is the user-safe text of a failed transfer: the AWS error code
// and HTTP status, without request IDs or URLs.
func apiSummary(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return errInterrupted.Error()
	}
	var ae smithy.APIError
	var status interface{ HTTPStatusCode() int }
	switch {
	case errors.As(err, &ae) && errors.As(err, &status):
		return fmt.Sprintf("%s (HTTP %d)", ae.ErrorCode(), status.HTTPStatusCode())
	case errors.As(err, &ae):
		return ae.ErrorCode()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed early"
	default:
		return "request failed"
	}
}
