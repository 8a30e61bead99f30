package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// The stage functions' code lives in the state bucket: one object per
// release (LambdaCode.ObjectKey), written once, from which every function
// of the state bucket's region is created and updated. A pass creating 120
// functions so uploads the package once instead of 120 times, and an agent
// whose release is already stored never builds the package at all: the
// object carries the package's CodeSha256 in its metadata.
//
// Lambda reads the object with the caller's permissions, so the agent needs
// s3:GetObject on it (deploy/agent-iam-policy.json, "StageFunctionCode"):
// https://repost.aws/knowledge-center/granular-access-lambda
// and the bucket must be in the function's region: "An Amazon S3 bucket in
// the same AWS Region as your function."
// https://docs.aws.amazon.com/lambda/latest/api/API_FunctionCode.html
// The state bucket is in the agent's region only (see region.go), so a
// function of another region gets the package in the request (ZipFile), as
// before: at most 50 MB zipped, which the agent's ~8 MB package is far from.
// https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html

// codeSHA256Metadata is the user metadata key (x-amz-meta-code-sha256) of
// a code object that holds the package's CodeSha256.
const codeSHA256Metadata = "code-sha256"

// functionCode is the code a CreateFunction or UpdateFunctionCode request
// gives a function, and the CodeSha256 of that package.
type functionCode struct {
	lambdatypes.FunctionCode
	sha256 string
}

// codeInS3 reports whether the functions of c's region take their code from
// the state bucket: it is in the agent's region.
func (p *Provisioner) codeInS3(c *clients) bool {
	return p.opts.StateBucket != "" && c.region == p.cfg.Region
}

// codeSHA256 returns the CodeSha256 of Options.LambdaCode: known after a
// build or a lookup, else read from the state bucket's object (which is
// written if missing), or, without a state bucket, by building the package.
func (p *Provisioner) codeSHA256(ctx context.Context) (string, error) {
	if sum := p.opts.LambdaCode.knownSHA256(); sum != "" {
		return sum, nil
	}
	if p.opts.StateBucket != "" {
		_, sum, err := p.storeCode(ctx)
		return sum, err
	}
	return p.opts.LambdaCode.SHA256()
}

// functionCode returns the code for a function of c's region: the state
// bucket's object in the agent's region, the package's bytes elsewhere.
func (p *Provisioner) functionCode(ctx context.Context, c *clients) (functionCode, error) {
	if p.codeInS3(c) {
		key, sum, err := p.storeCode(ctx)
		if err != nil {
			return functionCode{}, err
		}
		return functionCode{FunctionCode: lambdatypes.FunctionCode{S3Bucket: aws.String(p.opts.StateBucket), S3Key: aws.String(key)}, sha256: sum}, nil
	}
	zip, err := p.opts.LambdaCode.Zip()
	if err != nil {
		return functionCode{}, err
	}
	return functionCode{FunctionCode: lambdatypes.FunctionCode{ZipFile: zip}, sha256: codeSHA256(zip)}, nil
}

// storeCode makes sure the state bucket holds Options.LambdaCode's object
// (LambdaCode.store) and returns its key and the package's CodeSha256.
func (p *Provisioner) storeCode(ctx context.Context) (key, sum string, err error) {
	key, sum, err = p.opts.LambdaCode.store(ctx, p.opts.StateBucket, s3CodeStore{c: p.clients(""), bucket: p.opts.StateBucket, log: p.log})
	if err != nil {
		return "", "", fmt.Errorf("store the stage functions' code in s3://%s: %w", p.opts.StateBucket, err)
	}
	return key, sum, nil
}

// s3CodeStore is a codeStore in a bucket of the agent's region.
type s3CodeStore struct {
	c      *clients
	bucket string
	log    *slog.Logger
}

func (s s3CodeStore) head(ctx context.Context, key string) (string, bool, error) {
	out, err := s.c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	var nf *s3types.NotFound
	if errors.As(err, &nf) || hasCode(err, "NotFound", "NoSuchKey") {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("head object s3://%s/%s: %w", s.bucket, key, err)
	}
	// An object without its hash (written by hand, or cut short) is
	// written again: the hash is what saves building the package.
	sum := out.Metadata[codeSHA256Metadata]
	return sum, sum != "", nil
}

func (s s3CodeStore) put(ctx context.Context, key string, zip []byte, sum string) error {
	// The same key always gets the same bytes (a key names one
	// executable, whose zip carries no timestamps), so a concurrent write
	// by another agent of the same release is harmless: no condition.
	_, err := s.c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          bytes.NewReader(zip),
		ContentLength: aws.Int64(int64(len(zip))),
		ContentType:   aws.String("application/zip"),
		Metadata:      map[string]string{codeSHA256Metadata: sum},
	})
	if err != nil {
		return fmt.Errorf("put object s3://%s/%s: %w", s.bucket, key, err)
	}
	s.log.InfoContext(ctx, "stage function code stored", "bucket", s.bucket, "key", key, "bytes", len(zip))
	return nil
}
