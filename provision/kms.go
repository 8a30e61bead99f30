package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"golang.org/x/sync/errgroup"
)

// stageKeys are the customer managed KMS keys, as key ARNs, that a stage's
// data is encrypted with: the default encryption keys of its input and
// output buckets ("" when a bucket uses SSE-S3 or the AWS managed key) and
// the keys of the secrets its execution role reads. AWS managed keys need
// no grant: their key policies let every principal of the account use them
// through the service they belong to, so only customer managed keys are
// listed. https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-mgmt
type stageKeys struct {
	Input, Output string
	Secrets       []string // sorted, distinct
}

// findKeys reads, in parallel, which customer managed keys the stage's
// buckets and secrets use. The buckets must exist.
func (s *stageBuild) findKeys(ctx context.Context, _ *StageResources) error {
	secrets := secretARNs(s.spec)
	secretKeys := make([]string, len(secrets))
	var keys stageKeys
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { keys.Input, err = bucketKey(gctx, s.c, s.spec.InputBucket); return err })
	g.Go(func() (err error) { keys.Output, err = bucketKey(gctx, s.c, s.spec.OutputBucket); return err })
	for i, arn := range secrets {
		// A secret is read, and its key used, in the secret's own region.
		c := s.p.clients(arnRegion(arn, s.spec.Region))
		g.Go(func() (err error) { secretKeys[i], err = secretKey(gctx, c, arn); return err })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	keys.Secrets = compactNonEmpty(secretKeys...)
	slices.Sort(keys.Secrets)
	s.keys = keys
	return nil
}

// bucketKey returns the customer managed key a bucket's default encryption
// uses, or "" for none (SSE-S3, or SSE-KMS with the AWS managed key
// aws/s3, which S3 uses when the rule names no key).
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_ServerSideEncryptionByDefault.html
func bucketKey(ctx context.Context, c *clients, bucket string) (string, error) {
	out, err := c.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: &bucket})
	switch {
	case hasCode(err, "ServerSideEncryptionConfigurationNotFoundError"):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("get bucket encryption %s: %w", bucket, err)
	case out.ServerSideEncryptionConfiguration == nil:
		return "", nil
	}
	for _, r := range out.ServerSideEncryptionConfiguration.Rules {
		d := r.ApplyServerSideEncryptionByDefault
		if d == nil || (d.SSEAlgorithm != s3types.ServerSideEncryptionAwsKms && d.SSEAlgorithm != s3types.ServerSideEncryptionAwsKmsDsse) {
			continue
		}
		key, err := customerKey(ctx, c, aws.ToString(d.KMSMasterKeyID))
		if err != nil {
			return "", fmt.Errorf("default encryption key of bucket %s: %w", bucket, err)
		}
		return key, nil
	}
	return "", nil
}

// secretKey returns the customer managed key a secret is encrypted with, or
// "" for the AWS managed key aws/secretsmanager (DescribeSecret leaves
// KmsKeyId out then). A secret that does not exist needs no grant: ECS
// stops the stage's tasks with the reason, which the agent reports.
// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html
func secretKey(ctx context.Context, c *clients, arn string) (string, error) {
	out, err := c.secrets.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &arn})
	var nf *smtypes.ResourceNotFoundException
	switch {
	case errors.As(err, &nf) || hasCode(err, "ResourceNotFoundException"):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("describe secret %s: %w", arn, err)
	}
	key, err := customerKey(ctx, c, aws.ToString(out.KmsKeyId))
	if err != nil {
		return "", fmt.Errorf("key of secret %s: %w", arn, err)
	}
	return key, nil
}

// customerKey returns the ARN of the key id names (a key ARN, a key id, an
// alias name or an alias ARN, as S3 and Secrets Manager report keys), or ""
// when it is empty or an AWS managed key. IAM authorizes a KMS key by its
// key ARN only, so ids and aliases are resolved with DescribeKey.
// https://docs.aws.amazon.com/kms/latest/developerguide/cmks-in-iam-policies.html
// A key ARN is taken as it is, with no call: it may be another account's
// key, which DescribeKey may not be allowed on, and granting an AWS
// managed key by its ARN is harmless.
func customerKey(ctx context.Context, c *clients, id string) (string, error) {
	switch {
	case id == "" || awsManagedAlias(id):
		return "", nil
	case isKeyARN(id):
		return id, nil
	}
	out, err := c.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
	if err != nil {
		return "", fmt.Errorf("describe kms key %s: %w", id, err)
	}
	if out.KeyMetadata == nil || out.KeyMetadata.KeyManager == kmstypes.KeyManagerTypeAws {
		return "", nil
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

// awsManagedAlias reports an alias of an AWS managed key: "alias/aws/s3",
// or its alias ARN. Customers cannot create aliases under alias/aws/.
// https://docs.aws.amazon.com/kms/latest/developerguide/alias-about.html
func awsManagedAlias(id string) bool {
	if i := strings.Index(id, ":alias/"); i >= 0 && strings.HasPrefix(id, "arn:") {
		id = id[i+1:]
	}
	return strings.HasPrefix(id, "alias/aws/")
}

// isKeyARN reports a KMS key ARN: arn:PARTITION:kms:REGION:ACCOUNT:key/ID.
func isKeyARN(id string) bool {
	parts := strings.SplitN(id, ":", 6)
	return len(parts) == 6 && parts[0] == "arn" && parts[2] == "kms" && strings.HasPrefix(parts[5], "key/")
}

// arnRegion returns the region an ARN names, or def when it names none.
func arnRegion(arn, def string) string {
	if parts := strings.SplitN(arn, ":", 6); len(parts) == 6 && parts[3] != "" {
		return parts[3]
	}
	return def
}

// viaServices are the kms:ViaService values of service in the regions of
// keys: "s3.us-east-1.amazonaws.com". A KMS key is used in its own region
// only, so the region of its ARN is where the service uses it, and a list
// of regions admits each key through its own region's endpoint only.
// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
func viaServices(service string, keys []string) stringList {
	var out stringList
	for _, k := range keys {
		parts := strings.SplitN(k, ":", 6)
		if len(parts) < 6 {
			continue
		}
		domain := "amazonaws.com"
		if parts[1] == "aws-cn" {
			domain = "amazonaws.com.cn"
		}
		if v := service + "." + parts[3] + "." + domain; !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}
