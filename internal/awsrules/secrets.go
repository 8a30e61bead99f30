package awsrules

// SecretARNMatches reports whether an IAM policy's Resource entry matches a
// Secrets Manager secret ARN, the way IAM compares them: the whole string,
// case-sensitive, where "*" in the policy matches any run of characters and
// "?" any one character.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
//
// It exists for the rule that catches cloudpipe's secret permissions out: a
// secret's ARN ends with "-" and six random characters Secrets Manager adds
// ("...:secret:db-AbCdEf"), so a policy naming the secret without them
// ("...:secret:db") does not match its ARN, and a policy naming the full
// ARN does not match an ARN without them. Secrets Manager's advice is a
// policy resource ending in "-??????", which matches the suffix and nothing
// longer.
// https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html
// https://docs.aws.amazon.com/secretsmanager/latest/userguide/troubleshoot.html#ARN_secretnamehyphen
// kumo checks no IAM policy at all.
func SecretARNMatches(policyResource, requestedARN string) bool {
	return globMatch(policyResource, requestedARN)
}

// globMatch matches s against pattern, where "*" matches any run of
// characters and "?" any one; every other character matches itself.
// After a mismatch it retries from the last "*", consuming one more
// character of s, which bounds the work by len(pattern)*len(s).
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
