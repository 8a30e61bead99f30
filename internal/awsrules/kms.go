package awsrules

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
	"github.com/cloudpipe/cloudpipe/internal/iamsim"
)

// Customer managed KMS keys. S3 and Secrets Manager encrypt with a KMS key
// on the caller's behalf and with the caller's permissions: besides the
// service's own action, the caller needs the KMS action on the key, which
// IAM authorizes with kms:ViaService naming the service's endpoint in the
// region and kms:CallerAccount the caller's account. kumo encrypts nothing
// and checks nothing, so the proxy adds these authorizations to the
// requests that need them, finding the key as the service would (the
// object's, the bucket's default, the secret's) by reading the emulator as
// the operator.
//
// S3: writing an SSE-KMS object (PutObject, CreateMultipartUpload) needs
// kms:GenerateDataKey, reading one (GetObject) kms:Decrypt, and each part
// of a multipart upload (UploadPart) kms:Decrypt, because S3 decrypts the
// parts it holds to go on with the upload.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#require-sse-kms
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions
// https://repost.aws/knowledge-center/s3-large-file-encryption-kms-key
// A denial is S3's AccessDenied with IAM's message naming the KMS action.
// HeadObject reads metadata only, which S3 holds unencrypted: it needs no
// KMS permission, and the proxy asks for none.
//
// Secrets Manager: GetSecretValue of a secret encrypted with a customer
// managed key needs kms:Decrypt on it; a denial is 400
// AccessDeniedException "Access to KMS is not allowed".
// https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
//
// A key's own policy decides with the caller's IAM policies: IAM policies
// count only if the key policy lets the account's principals use them, as
// a key's default policy does ("Enable IAM User Permissions", the account
// root as principal). The proxy reads each key's policy from the emulator
// for every KMS authorization.
// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam
//
// AWS managed keys (aws/s3, aws/secretsmanager, or SSE-KMS naming no key)
// need no IAM permission: their key policies allow every principal of the
// account through their service. Only customer managed keys are checked.
// https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#aws-managed-cmk

// kmsAccessDeniedBySecretsManager is Secrets Manager's answer when KMS
// refuses to decrypt a secret for the caller.
var kmsAccessDeniedBySecretsManager = faultproxy.APIError{Status: http.StatusBadRequest, Code: "AccessDeniedException", Message: "Access to KMS is not allowed"}

// dataKeyAuthorizations returns the KMS authorizations a call needs for
// the customer managed key of the data it reads or writes, if any.
func (a *authority) dataKeyAuthorizations(c call, p params, region string) []authz {
	ctx := c.r.Context()
	switch c.op {
	case "S3.GetObject", "S3.PutObject", "S3.PostObject":
		if len(p.path) < 2 {
			return nil
		}
		bucket, object := p.path[0], strings.Join(p.path[1:], "/")
		q := c.r.URL.Query()
		var action, key string
		switch op := s3ObjectOperation(c.r); op {
		case "GetObject":
			action, key = "kms:Decrypt", a.objectKey(ctx, bucket, object, q.Get("versionId"))
		case "PutObject", "CreateMultipartUpload":
			action, key = "kms:GenerateDataKey", a.uploadKey(ctx, c.r.Header, bucket)
		case "UploadPart":
			action, key = "kms:Decrypt", a.partKey(ctx, q.Get("uploadId"), bucket)
		}
		if key == "" {
			return nil
		}
		return []authz{{op: c.op, action: action, resource: key, context: a.viaContext("s3", region)}}
	case "Secrets Manager.GetSecretValue":
		if key := a.secretKey(ctx, p.str("SecretId")); key != "" {
			return []authz{a.secretDecrypt(c.op, key, region)}
		}
	}
	return nil
}

// secretDecrypt is the authorization Secrets Manager asks for to decrypt a
// secret of region encrypted with key.
func (a *authority) secretDecrypt(op, key, region string) authz {
	denied := kmsAccessDeniedBySecretsManager
	return authz{op: op, action: "kms:Decrypt", resource: key, context: a.viaContext("secretsmanager", region), denied: &denied}
}

// viaContext is the context of a KMS request a service makes for a
// caller of the proxy's account in region.
// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-caller-account
func (a *authority) viaContext(service, region string) map[string]any {
	domain := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		domain = "amazonaws.com.cn"
	}
	return map[string]any{"kms:ViaService": service + "." + region + "." + domain, "kms:CallerAccount": a.cfg.Account}
}

// s3ObjectOperation names an object request more finely than
// faultproxy.Operation, which calls a part upload PutObject and both ends
// of a multipart upload PostObject; requests on an object's subresources
// (tagging, ACL, ...) and copies are "", as they need no data key here.
func s3ObjectOperation(r *http.Request) string {
	q := r.URL.Query()
	for k := range q {
		switch {
		case k == "versionId", k == "uploadId", k == "partNumber", k == "uploads", k == "x-id", strings.HasPrefix(k, "response-"):
		default:
			return "" // a subresource
		}
	}
	_, upload := q["uploadId"]
	_, uploads := q["uploads"]
	copied := r.Header.Get("X-Amz-Copy-Source") != ""
	switch {
	case r.Method == http.MethodGet && !upload:
		return "GetObject"
	case r.Method == http.MethodPut && !upload && !copied:
		return "PutObject"
	case r.Method == http.MethodPut && upload && !copied:
		return "UploadPart"
	case r.Method == http.MethodPost && uploads:
		return "CreateMultipartUpload"
	}
	return ""
}

// objectKey returns the customer managed key an object is encrypted with,
// or "" (none, or no such object: S3 answers that itself).
func (a *authority) objectKey(ctx context.Context, bucket, object, version string) string {
	in := &s3.HeadObjectInput{Bucket: &bucket, Key: &object}
	if version != "" {
		in.VersionId = &version
	}
	out, err := a.targetS3.HeadObject(ctx, in)
	if err != nil || !isKMS(string(out.ServerSideEncryption)) {
		return ""
	}
	return a.keyARN(ctx, aws.ToString(out.SSEKMSKeyId))
}

// uploadKey returns the customer managed key S3 encrypts a new object with:
// the one the request's headers name, else the bucket's default
// encryption's; "" for none. SSE-KMS naming no key is the AWS managed key.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html
func (a *authority) uploadKey(ctx context.Context, h http.Header, bucket string) string {
	if sse := h.Get("X-Amz-Server-Side-Encryption"); sse != "" {
		if !isKMS(sse) {
			return ""
		}
		return a.keyARN(ctx, h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"))
	}
	out, err := a.targetS3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: &bucket})
	if err != nil || out.ServerSideEncryptionConfiguration == nil {
		return ""
	}
	for _, rule := range out.ServerSideEncryptionConfiguration.Rules {
		if d := rule.ApplyServerSideEncryptionByDefault; d != nil && isKMS(string(d.SSEAlgorithm)) {
			return a.keyARN(ctx, aws.ToString(d.KMSMasterKeyID))
		}
	}
	return ""
}

// partKey returns the key of the multipart upload a part belongs to, as
// its CreateMultipartUpload set it (noteUploadKey), else the bucket's.
func (a *authority) partKey(ctx context.Context, uploadID, bucket string) string {
	a.mu.Lock()
	key, ok := a.uploadKeys[uploadID]
	a.mu.Unlock()
	if ok {
		return key
	}
	return a.uploadKey(ctx, http.Header{}, bucket)
}

// noteUploadKey remembers the key of a multipart upload when it is
// created: its parts carry no encryption headers.
func noteUploadKey(p *Proxy, c call, ans *answer) {
	if p.iam == nil || ans.status != http.StatusOK || s3ObjectOperation(c.r) != "CreateMultipartUpload" {
		return
	}
	var out struct{ UploadId string }
	if xml.Unmarshal(ans.body, &out) != nil || out.UploadId == "" {
		return
	}
	key := p.iam.uploadKey(c.r.Context(), c.r.Header, bucketOf(c.r))
	p.iam.mu.Lock()
	p.iam.uploadKeys[out.UploadId] = key
	p.iam.mu.Unlock()
}

// secretKey returns the customer managed key a secret is encrypted with,
// or "" (the AWS managed key, or no such secret).
func (a *authority) secretKey(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	out, err := a.targetSecrets.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &id})
	if err != nil {
		return ""
	}
	return a.keyARN(ctx, aws.ToString(out.KmsKeyId))
}

// keyARN resolves what S3 and Secrets Manager record of a key (a key ARN,
// a key id, an alias name or an alias ARN) to the key's ARN, which IAM
// authorizes, or "" for an AWS managed key, no key, or one the emulator
// does not know.
func (a *authority) keyARN(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	out, err := a.targetKMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(aliasARNToName(id))})
	if err != nil || out.KeyMetadata == nil || out.KeyMetadata.KeyManager == kmstypes.KeyManagerTypeAws {
		return ""
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// keyPolicy returns the key policy of the key a KMS authorization is for,
// nil for any other authorization (or a key the emulator does not know,
// which then allows nothing, as a missing key does not).
func (a *authority) keyPolicy(ctx context.Context, q authz) json.RawMessage {
	if !strings.HasPrefix(q.action, "kms:") || !strings.Contains(q.resource, ":key/") {
		return nil
	}
	out, err := a.targetKMS.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(q.resource), PolicyName: aws.String("default")})
	if err != nil || aws.ToString(out.Policy) == "" {
		return nil
	}
	return json.RawMessage(aws.ToString(out.Policy))
}

// kmsVars names the key a KMS request acts on, for its IAM resource: by
// its key ARN, which IAM matches, also when the request names an alias.
// https://docs.aws.amazon.com/kms/latest/developerguide/cmks-in-iam-policies.html
func (a *authority) kmsVars(ctx context.Context, id string) []vars {
	if id == "" {
		return nil
	}
	arn := id
	if resolved := a.keyARN(ctx, id); resolved != "" {
		arn = resolved
	}
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) == 6 && strings.HasPrefix(parts[5], "key/") {
		return []vars{{"Region": parts[3], "Account": parts[4], "KeyId": strings.TrimPrefix(parts[5], "key/")}}
	}
	return []vars{{"KeyId": id}} // unknown: the target answers NotFoundException
}

// aliasARNToName turns an alias ARN into the alias name, which kumo
// resolves (it finds ARNs of keys only); KMS accepts both.
// https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html
func aliasARNToName(id string) string {
	if i := strings.Index(id, ":alias/"); i >= 0 && strings.HasPrefix(id, "arn:") {
		return id[i+1:]
	}
	return id
}

// kmsRequestToKumo rewrites an alias ARN in a KMS request to the alias
// name, which kumo finds.
func kmsRequestToKumo(c call, body []byte) []byte {
	if !strings.HasPrefix(c.op, "KMS.") {
		return body
	}
	var in map[string]any
	if json.Unmarshal(body, &in) != nil {
		return body
	}
	id, _ := in["KeyId"].(string)
	if name := aliasARNToName(id); name != id {
		in["KeyId"] = name
		if b, err := json.Marshal(in); err == nil {
			return b
		}
	}
	return body
}

func isKMS(sse string) bool {
	return sse == string(s3types.ServerSideEncryptionAwsKms) || sse == string(s3types.ServerSideEncryptionAwsKmsDsse)
}

// secretRegion returns the region of a secret ARN, else def.
func secretRegion(arn, def string) string {
	if parts := strings.SplitN(arn, ":", 6); len(parts) == 6 && parts[2] == "secretsmanager" && parts[3] != "" {
		return parts[3]
	}
	return def
}

// authorizeSecretKey is Authorize's part for a service reading a secret
// with role (ECS with a task's execution role): the secret's customer
// managed key, if any, must allow role kms:Decrypt through Secrets
// Manager, or the service cannot read it.
func (p *Proxy) authorizeSecretKey(ctx context.Context, role, secret string, policies []json.RawMessage) error {
	a := p.iam
	key := a.secretKey(ctx, secret)
	if key == "" {
		return nil
	}
	q := a.secretDecrypt("(service) secretsmanager:GetSecretValue", key, secretRegion(secret, defaultRegion))
	res, err := a.evaluate(ctx, role, policies, q)
	if err != nil {
		return err
	}
	if res.Decision != iamsim.Allowed {
		return &Denied{Message: q.denied.Message}
	}
	return nil
}
