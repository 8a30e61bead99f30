package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func TestParseRange(t *testing.T) {
	const size = 100
	for _, tc := range []struct {
		spec        string
		first, last int64
		ok          bool
	}{
		{"bytes=0-9", 0, 9, true},
		{"bytes=90-", 90, 99, true},
		{"bytes=90-200", 90, 99, true},
		{"bytes=-10", 90, 99, true},
		{"bytes=-200", 0, 99, true},
		{"bytes=100-", 0, 0, false},
		{"bytes=9-0", 0, 0, false},
		{"bytes=0-1,5-6", 0, 0, false},
		{"items=0-9", 0, 0, false},
		{"bytes=-0", 0, 0, false},
		{"bytes=x-9", 0, 0, false},
	} {
		first, last, ok := parseRange(tc.spec, size)
		if ok != tc.ok || (ok && (first != tc.first || last != tc.last)) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", tc.spec, size, first, last, ok, tc.first, tc.last, tc.ok)
		}
	}
}

// TestRoundTrip drives nulls3 with the SDK as the benchmark's clients do:
// a multipart upload, its size, a ranged read of its bytes, a conditional
// write refused, and a delete.
func TestRoundTrip(t *testing.T) {
	srv := newServer()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(ts.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret", ""),
	})
	ctx := t.Context()
	bucket, key := aws.String("b"), aws.String("dir/k")
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
		t.Fatal(err)
	}
	upload := func() error {
		mpu, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		var parts []types.CompletedPart
		for i, n := range []int{5 << 20, 5 << 20, 123} {
			out, err := client.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: key, UploadId: mpu.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(make([]byte, n))})
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
		}
		_, err = client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: bucket, Key: key,
			UploadId: mpu.UploadId, IfNoneMatch: aws.String("*"), MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
		return err
	}
	if err := upload(); err != nil {
		t.Fatal(err)
	}
	const size = 10<<20 + 123
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if n := aws.ToInt64(head.ContentLength); n != size {
		t.Errorf("HeadObject: %d bytes, want %d", n, size)
	}
	// A range across a block boundary reads the block repeated.
	get, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key, Range: aws.String("bytes=1048570-1048585")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(get.Body)
	get.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, srv.block[blockSize-6:]...), srv.block[:10]...)
	if !bytes.Equal(got, want) || aws.ToString(get.ContentRange) != "bytes 1048570-1048585/10485883" {
		t.Errorf("GetObject range: %x (%s), want %x", got, aws.ToString(get.ContentRange), want)
	}
	var ae smithy.APIError
	if err := upload(); !errors.As(err, &ae) || ae.ErrorCode() != "PreconditionFailed" {
		t.Errorf("second upload with If-None-Match: *: %v, want PreconditionFailed", err)
	}
	if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: key}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Head(ts.URL + "/b/dir/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD after delete: %s, want 404", resp.Status)
	}
}
