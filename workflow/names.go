package workflow

import (
	"strings"
)

// bucketProblem returns why name is not a valid S3 general purpose bucket
// name, or "" if it is. The rules are S3's
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html);
// catching them here turns a failed deploy into a message on the pull request.
func bucketProblem(name string) string {
	if len(name) < 3 || len(name) > 63 {
		return "must be 3 to 63 characters long"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', isDigit(c), c == '-', c == '.':
		case 'A' <= c && c <= 'Z':
			return "must be lowercase: use " + quote(strings.ToLower(name))
		default:
			return "may hold only lowercase letters, digits, dots and hyphens"
		}
	}
	if !isLowerAlnum(name[0]) || !isLowerAlnum(name[len(name)-1]) {
		return "must start and end with a letter or digit"
	}
	if strings.Contains(name, "..") {
		return "must not contain two dots in a row"
	}
	if ipLike(name) {
		return "must not look like an IP address"
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return "must not start with " + quote(p) + " (reserved by S3)"
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return "must not end with " + quote(s) + " (reserved by S3)"
		}
	}
	return ""
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || isDigit(c) }

// ipLike reports whether s is four dot-separated groups of digits, like
// 192.168.5.4, which S3 refuses as a bucket name.
func ipLike(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
	}
	return true
}

// validEnvName reports whether s can be an environment variable name that
// every shell and ECS accept: a letter or underscore, then letters, digits
// and underscores.
func validEnvName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && isDigit(c)) {
			return false
		}
	}
	return true
}

// maxWorkflowName keeps cp-<workflow>-<stage> and the role names derived from
// it within AWS's 64-character limits.
const maxWorkflowName = 32

// workflowNameProblem returns why name (a file's base name) cannot name a
// workflow, or "".
func workflowNameProblem(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > maxWorkflowName:
		return "is longer than 32 characters"
	case !('a' <= name[0] && name[0] <= 'z'):
		return "must start with a lowercase letter"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '-' {
			return "may hold only lowercase letters, digits and hyphens"
		}
	}
	return ""
}

// suggestWorkflowName turns name into one that passes workflowNameProblem,
// for the "rename the file" hint; "" when there is nothing to build on.
func suggestWorkflowName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	s := strings.TrimLeft(b.String(), "0123456789-")
	if len(s) > maxWorkflowName {
		s = s[:maxWorkflowName]
	}
	s = strings.TrimRight(s, "-")
	if workflowNameProblem(s) != "" {
		return ""
	}
	return s
}

// InitContainerName is the name cloudpipe gives its own init container in
// every stage's task definition (it installs the runner): an algorithm,
// whose name labels the other container, may not take it, since ECS refuses
// a task definition with two containers of one name.
const InitContainerName = "cloudpipe-init"

// algorithmNameProblem returns why name cannot name an algorithm, or "". The
// limits are those of an ECS container name, so the name can label the
// algorithm's container in a task definition as it is.
func algorithmNameProblem(name string) string {
	if len(name) > 255 {
		return "is longer than 255 characters"
	}
	if name == InitContainerName {
		return "is the name of cloudpipe's own init container in every task definition: choose another"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '-' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c)) {
			return "may hold only letters, digits, hyphens and underscores, like an ECS container name"
		}
	}
	return ""
}

// envName shows a variable name in a message: bare when it is a valid name,
// quoted (and shortened) when it may hold anything.
func envName(k string) string {
	if validEnvName(k) && len(k) <= maxQuoted {
		return k
	}
	return quote(k)
}

// allDigits reports whether s is n decimal digits.
func allDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// credentialWords mark a variable name as holding a credential. Matching is
// on the upper-cased name, so DB_Password counts.
var credentialWords = []string{"PASSWORD", "PASSWD", "TOKEN", "SECRET", "API_KEY", "APIKEY", "PRIVATE_KEY"}

// credentialLike reports whether a variable called name would hold a
// credential, whose value must come from Secrets Manager rather than sit in
// Git in plain text.
func credentialLike(name string) bool {
	u := strings.ToUpper(name)
	switch u {
	case "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN":
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}

// secretARN is a parsed Secrets Manager ARN as ECS takes it in valueFrom:
// arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME[:JSON-KEY:VERSION-STAGE:VERSION-ID].
type secretARN struct {
	partition, region, account, name string
	key                              bool // a :json-key:stage:id suffix is present
}

// secretARNExample is quoted in every message about a malformed ARN.
const secretARNExample = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-password-AbCdEf"

// parseSecretARN parses s or says what is wrong with it.
func parseSecretARN(s string) (secretARN, string) {
	parts := strings.Split(s, ":")
	if len(parts) < 7 || parts[0] != "arn" {
		return secretARN{}, "is not a Secrets Manager ARN (not shown here, in case it is a secret itself)"
	}
	a := secretARN{partition: parts[1], region: parts[3], account: parts[4], name: parts[6]}
	switch {
	case parts[1] != "aws" && parts[1] != "aws-cn" && parts[1] != "aws-us-gov":
		return a, "has partition " + quote(parts[1]) + "; expected aws, aws-cn or aws-us-gov"
	case parts[2] != "secretsmanager":
		return a, "is an ARN of service " + quote(parts[2]) + ", not secretsmanager"
	case regionPartition[a.region] == "":
		return a, "names region " + quote(a.region) + ", which is not an AWS region"
	case regionPartition[a.region] != a.partition:
		return a, "names region " + a.region + ", which is not in partition " + a.partition
	case !allDigits(a.account, 12):
		return a, "has account " + quote(a.account) + "; an account id is 12 digits"
	case parts[5] != "secret":
		return a, "must have resource type \"secret\", not " + quote(parts[5])
	case !validSecretName(a.name):
		return a, "has secret name " + quote(a.name) + "; names hold letters, digits and /_+=.@-"
	case len(parts) == 7:
		return a, ""
	case len(parts) == 10:
		a.key = true
		return a, ""
	}
	return a, "has " + quote(strings.Join(parts[7:], ":")) + " after the secret name; to pick one key of a JSON secret end it in :json-key:: (three fields)"
}

// validSecretName follows Secrets Manager's naming rule: 1-512 characters of
// letters, digits and /_+=.@-.
func validSecretName(s string) bool {
	if s == "" || len(s) > 512 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || strings.IndexByte("/_+=.@-", c) >= 0) {
			return false
		}
	}
	return true
}

// closest returns the candidate within a small edit distance of s (or equal
// ignoring case), for "did you mean" hints; "" if none is close.
func closest(s string, candidates []string) string {
	if len(s) > 64 {
		return "" // no typo is that long, and distance is quadratic
	}
	best, bestD := "", 3
	for _, c := range candidates {
		if strings.EqualFold(s, c) {
			return c
		}
		limit := 2
		if len(c) <= 4 {
			limit = 1 // two edits make any short name look like any other
		}
		if abs(len(s)-len(c)) > limit {
			continue // cannot be close; skip the quadratic part
		}
		if d := editDistance(s, c); d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// kmsKeyARNExample is quoted in every message about a malformed key ARN.
const kmsKeyARNExample = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// kmsKeyARN is a parsed KMS key ARN.
type kmsKeyARN struct {
	partition, region string
	alias             bool // an alias ARN, which parseKMSKeyARN refuses
}

// parseKMSKeyARN parses s as the ARN of a KMS key, or says what is wrong
// with it. Only a key ARN will do: IAM matches kms:Decrypt and
// kms:GenerateDataKey against the ARN of the key itself, so a policy
// naming an alias (or an alias ARN) grants nothing for it.
// https://docs.aws.amazon.com/kms/latest/developerguide/cmks-in-iam-policies.html
func parseKMSKeyARN(s string) (kmsKeyARN, string) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" {
		return kmsKeyARN{}, "is not a KMS key ARN"
	}
	a := kmsKeyARN{partition: parts[1], region: parts[3]}
	kind, id, _ := strings.Cut(parts[5], "/")
	switch {
	case kind == "alias":
		a.alias = true
		return a, "is an alias ARN, and IAM matches kms:Decrypt and kms:GenerateDataKey against the key's own ARN, never an alias: a policy naming the alias would grant nothing"
	case parts[1] != "aws" && parts[1] != "aws-cn" && parts[1] != "aws-us-gov":
		return a, "has partition " + quote(parts[1]) + "; expected aws, aws-cn or aws-us-gov"
	case regionPartition[a.region] == "":
		return a, "names region " + quote(a.region) + ", which is not an AWS region"
	case regionPartition[a.region] != a.partition:
		return a, "names region " + a.region + ", which is not in partition " + a.partition
	case !allDigits(parts[4], 12):
		return a, "has account " + quote(parts[4]) + "; an account id is 12 digits"
	case kind != "key":
		return a, "must have resource type \"key\", not " + quote(kind)
	case !validKMSKeyID(id):
		return a, "has key id " + quote(id) + "; a key id is a UUID such as 1234abcd-12ab-34cd-56ef-1234567890ab, or mrk- and 32 hex digits for a multi-Region key"
	}
	return a, ""
}

// validKMSKeyID reports whether id is a KMS key id: a UUID in lowercase
// hex, or "mrk-" and 32 hex digits for a multi-Region key.
// https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id-key-id
func validKMSKeyID(id string) bool {
	if rest, ok := strings.CutPrefix(id, "mrk-"); ok {
		return len(rest) == 32 && allHex(rest)
	}
	groups := strings.Split(id, "-")
	if len(groups) != 5 {
		return false
	}
	for i, n := range []int{8, 4, 4, 4, 12} {
		if len(groups[i]) != n || !allHex(groups[i]) {
			return false
		}
	}
	return true
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
