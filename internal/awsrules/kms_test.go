package awsrules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// kmsFixture is what the KMS tests share, made by the operator: a customer
// managed key with an alias, the default encryption key of one bucket; a
// bucket encrypted with S3's keys; a bucket with SSE-KMS naming no key
// (the AWS managed key aws/s3); a second key, encrypting a secret.
type kmsFixture struct {
	key, alias             string // the data key's ARN and alias name
	secretKey              string // the secret's key ARN
	kmsBucket, plainBucket string
	awsManagedBucket       string
	secret                 string // the secret's ARN
}

func newKMSFixture(t *testing.T, operator aws.Config) kmsFixture {
	t.Helper()
	ctx := t.Context()
	name := testenv.UniqueName(t)
	k := kms.NewFromConfig(operator)
	newKey := func() string {
		out, err := k.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.KeyMetadata.Arn)
	}
	f := kmsFixture{key: newKey(), alias: "alias/" + name, secretKey: newKey(),
		kmsBucket: name + "-kms", plainBucket: name + "-plain", awsManagedBucket: name + "-aws"}
	if _, err := k.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &f.alias, TargetKeyId: &f.key}); err != nil {
		t.Fatal(err)
	}
	c := s3.NewFromConfig(operator, testenv.S3PathStyle)
	for bucket, rule := range map[string]*s3types.ServerSideEncryptionByDefault{
		f.kmsBucket:        {SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: &f.alias},
		f.plainBucket:      {SSEAlgorithm: s3types.ServerSideEncryptionAes256},
		f.awsManagedBucket: {SSEAlgorithm: s3types.ServerSideEncryptionAwsKms},
	} {
		createBucket(ctx, t, c, bucket)
		if _, err := c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(bucket),
			ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{
				Rules: []s3types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: rule}}}}); err != nil {
			t.Fatal(err)
		}
	}
	secret, err := secretsmanager.NewFromConfig(operator).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name), SecretString: aws.String("s3cr3t"), KmsKeyId: &f.secretKey})
	if err != nil {
		t.Fatal(err)
	}
	f.secret = aws.ToString(secret.ARN)
	return f
}

// TestKMSKeysOfS3Data: reading and writing objects encrypted with a
// customer managed key needs kms:Decrypt and kms:GenerateDataKey on that
// key through S3 (kms:ViaService), whether the key comes from the bucket's
// default encryption or the request's headers; S3's keys and the AWS
// managed key need nothing, and neither does HeadObject.
func TestKMSKeysOfS3Data(t *testing.T) {
	ctx := t.Context()
	_, operator := newProxy(t, awsrules.Options{})
	f := newKMSFixture(t, operator)
	objects := `{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":["arn:aws:s3:::` +
		f.kmsBucket + `/*","arn:aws:s3:::` + f.plainBucket + `/*","arn:aws:s3:::` + f.awsManagedBucket + `/*"]}`
	grant := func(actions, via string) string {
		return `{"Effect":"Allow","Action":` + actions + `,"Resource":"` + f.key + `","Condition":{"StringEquals":{"kms:ViaService":"` + via + `"}}}`
	}
	const s3Via = "s3.us-east-1.amazonaws.com"
	policies := map[string]json.RawMessage{
		"both":           doc(objects, grant(`["kms:Decrypt","kms:GenerateDataKey"]`, s3Via)),
		"decrypt":        doc(objects, grant(`"kms:Decrypt"`, s3Via)),
		"generate":       doc(objects, grant(`"kms:GenerateDataKey"`, s3Via)),
		"none":           doc(objects),
		"other service":  doc(objects, grant(`["kms:Decrypt","kms:GenerateDataKey"]`, "secretsmanager.us-east-1.amazonaws.com")),
		"other key only": doc(objects, strings.ReplaceAll(grant(`["kms:Decrypt","kms:GenerateDataKey"]`, s3Via), f.key, f.secretKey)),
	}
	// Objects to read, put by the operator: one under the bucket's key,
	// one under the key named in its PUT.
	put := s3.NewFromConfig(operator, testenv.S3PathStyle)
	for _, in := range []*s3.PutObjectInput{
		{Bucket: &f.kmsBucket, Key: aws.String("in/default")},
		{Bucket: &f.plainBucket, Key: aws.String("in/named"), ServerSideEncryption: s3types.ServerSideEncryptionAwsKms, SSEKMSKeyId: &f.key},
		{Bucket: &f.plainBucket, Key: aws.String("in/plain")},
		{Bucket: &f.awsManagedBucket, Key: aws.String("in/aws")},
	} {
		in.Body = strings.NewReader("data")
		if _, err := put.PutObject(ctx, in); err != nil {
			t.Fatal(err)
		}
	}

	type request struct {
		name string
		do   func(ctx context.Context, c *s3.Client) error
		need string // the KMS action on f.key it needs; "" for none
	}
	requests := []request{
		{"get under the bucket's key", get(f.kmsBucket, "in/default"), "kms:Decrypt"},
		{"get under a key named at put", get(f.plainBucket, "in/named"), "kms:Decrypt"},
		{"get under S3's key", get(f.plainBucket, "in/plain"), ""},
		{"get under the AWS managed key", get(f.awsManagedBucket, "in/aws"), ""},
		{"head under the bucket's key", func(ctx context.Context, c *s3.Client) error {
			_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.kmsBucket, Key: aws.String("in/default")})
			return err
		}, ""},
		{"put under the bucket's key", putObject(f.kmsBucket, nil), "kms:GenerateDataKey"},
		{"put naming the key", putObject(f.plainBucket, func(in *s3.PutObjectInput) {
			in.ServerSideEncryption, in.SSEKMSKeyId = s3types.ServerSideEncryptionAwsKms, &f.key
		}), "kms:GenerateDataKey"},
		{"put naming S3's key into the key's bucket", putObject(f.kmsBucket, func(in *s3.PutObjectInput) {
			in.ServerSideEncryption = s3types.ServerSideEncryptionAes256
		}), ""},
		{"put under S3's key", putObject(f.plainBucket, nil), ""},
		{"put under the AWS managed key", putObject(f.awsManagedBucket, nil), ""},
		{"start a multipart upload", func(ctx context.Context, c *s3.Client) error {
			_, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &f.kmsBucket, Key: aws.String("out/multi")})
			return err
		}, "kms:GenerateDataKey"},
		// A part is uploaded by the operator's CreateMultipartUpload,
		// so only the part needs the role's permission.
		{"upload a part", uploadPart(put, f.kmsBucket), "kms:Decrypt"},
		{"upload a part under S3's key", uploadPart(put, f.plainBucket), ""},
	}
	// Which of the two actions each policy allows through S3.
	allows := map[string]map[string]bool{
		"both": {"kms:Decrypt": true, "kms:GenerateDataKey": true}, "decrypt": {"kms:Decrypt": true},
		"generate": {"kms:GenerateDataKey": true}, "none": {}, "other service": {}, "other key only": {},
	}
	for name, policy := range policies {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			_, _, tester := iamProxy(t, policy)
			c := s3.NewFromConfig(tester, testenv.S3PathStyle)
			for _, r := range requests {
				err := r.do(ctx, c)
				if r.need == "" || allows[name][r.need] {
					if err != nil {
						t.Errorf("%s: %v, want it allowed", r.name, err)
					}
					continue
				}
				want := "is not authorized to perform: " + r.need + " on resource: " + f.key
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v, want S3's AccessDenied saying %q", r.name, err, want)
					continue
				}
				wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
			}
		})
	}
}

func get(bucket, key string) func(context.Context, *s3.Client) error {
	return func(ctx context.Context, c *s3.Client) error {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err == nil {
			out.Body.Close()
		}
		return err
	}
}

func putObject(bucket string, mod func(*s3.PutObjectInput)) func(context.Context, *s3.Client) error {
	return func(ctx context.Context, c *s3.Client) error {
		in := &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("out/one"), Body: strings.NewReader("result")}
		if mod != nil {
			mod(in)
		}
		_, err := c.PutObject(ctx, in)
		return err
	}
}

// uploadPart uploads a part of a multipart upload the operator starts.
func uploadPart(operator *s3.Client, bucket string) func(context.Context, *s3.Client) error {
	return func(ctx context.Context, c *s3.Client) error {
		up, err := operator.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("out/parts")})
		if err != nil {
			return fmt.Errorf("operator's CreateMultipartUpload: %w", err)
		}
		_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: aws.String("out/parts"), UploadId: up.UploadId,
			PartNumber: aws.Int32(1), Body: strings.NewReader("part")})
		return err
	}
}

// TestKMSKeyOfASecret: reading a secret encrypted with a customer managed
// key needs kms:Decrypt on it through Secrets Manager, whether the role
// reads it or a service reads it with the role (Authorize, as ECS does
// with a task's execution role); Secrets Manager's refusal says "Access to
// KMS is not allowed".
func TestKMSKeyOfASecret(t *testing.T) {
	ctx := t.Context()
	_, operator := newProxy(t, awsrules.Options{})
	f := newKMSFixture(t, operator)
	read := `{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"` + f.secret + `"}`
	grant := func(key, via string) string {
		return `{"Effect":"Allow","Action":"kms:Decrypt","Resource":"` + key + `","Condition":{"StringEquals":{"kms:ViaService":"` + via + `"}}}`
	}
	tests := []struct {
		name    string
		policy  json.RawMessage
		allowed bool
	}{
		{"with the key through Secrets Manager", doc(read, grant(f.secretKey, "secretsmanager.us-east-1.amazonaws.com")), true},
		{"without the key", doc(read), false},
		{"with the key through S3 only", doc(read, grant(f.secretKey, "s3.us-east-1.amazonaws.com")), false},
		{"with another key", doc(read, grant(f.key, "secretsmanager.us-east-1.amazonaws.com")), false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			p, _, tester := iamProxy(t, tt.policy)
			_, err := secretsmanager.NewFromConfig(tester).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &f.secret})
			byService := p.Authorize(ctx, "tester", "secretsmanager:GetSecretValue", f.secret)
			if tt.allowed {
				if err != nil || byService != nil {
					t.Errorf("GetSecretValue: %v; as a service: %v; want both allowed", err, byService)
				}
				return
			}
			wantRefused(t, err, http.StatusBadRequest, "AccessDeniedException", "Access to KMS is not allowed")
			var denied *awsrules.Denied
			if !errors.As(byService, &denied) || denied.Message != "Access to KMS is not allowed" {
				t.Errorf("as a service: %v, want a *Denied saying Access to KMS is not allowed", byService)
			}
		})
	}
}

// TestKMSDescribeKeyIsAuthorizedOnTheKey: IAM authorizes a KMS request on
// the key's ARN, also when it names the key by alias.
func TestKMSDescribeKeyIsAuthorizedOnTheKey(t *testing.T) {
	ctx := t.Context()
	_, operator := newProxy(t, awsrules.Options{})
	f := newKMSFixture(t, operator)
	_, _, tester := iamProxy(t, doc(`{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"`+f.key+`"}`))
	k := kms.NewFromConfig(tester)
	aliasARN := strings.Replace(f.key, ":key/", ":", 1)
	aliasARN = aliasARN[:strings.LastIndex(aliasARN, ":")+1] + f.alias
	for _, id := range []string{f.key, f.alias, aliasARN, f.key[strings.LastIndex(f.key, "/")+1:]} {
		out, err := k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil || aws.ToString(out.KeyMetadata.Arn) != f.key {
			t.Errorf("DescribeKey(%s): %v, want key %s", id, err, f.key)
		}
	}
	_, err := k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &f.secretKey})
	wantRefused(t, err, http.StatusBadRequest, "AccessDeniedException", "")
}

// TestKMSKeyPolicyMustLetIAMPoliciesCount: an IAM policy grants a KMS key
// only when the key's policy lets the account's IAM policies count, as the
// default key policy does; a key policy naming other principals only
// refuses the role whatever its IAM policy says.
func TestKMSKeyPolicyMustLetIAMPoliciesCount(t *testing.T) {
	ctx := t.Context()
	_, operator := newProxy(t, awsrules.Options{})
	f := newKMSFixture(t, operator)
	_, _, tester := iamProxy(t, doc(`{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"`+f.key+`"}`))
	admin := kms.NewFromConfig(operator)
	setPolicy := func(principal string) {
		t.Helper()
		policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + principal + `"},"Action":"kms:*","Resource":"*"}]}`
		if _, err := admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &f.key, PolicyName: aws.String("default"), Policy: &policy}); err != nil {
			t.Fatal(err)
		}
	}
	k := kms.NewFromConfig(tester)
	setPolicy("arn:aws:iam::000000000000:role/key-admin")
	_, err := k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &f.key})
	wantRefused(t, err, http.StatusBadRequest, "AccessDeniedException", "")
	setPolicy("arn:aws:iam::000000000000:root") // the default key policy's principal
	if _, err := k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &f.key}); err != nil {
		t.Errorf("with the key policy letting IAM policies count: %v", err)
	}
}
