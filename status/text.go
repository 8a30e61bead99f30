package status

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudpipe/cloudpipe/internal/secret"
)

// MaxDescription is the longest description, in runes, that a commit status
// carries; GitHub refuses longer ones. Every description built here, and
// every description Post sends, is cut to it.
const MaxDescription = 140

// PlanContext is the context of the status on each pull request head that
// says what merging it would change.
const PlanContext = "cloudpipe/plan"

// WorkflowContext returns the context of the status, on the commit that
// deployed it, that says where workflow name takes its input and leaves
// its results: "cloudpipe/<name>".
func WorkflowContext(name string) string { return "cloudpipe/" + name }

// RunContext returns the context of the status that counts the runs of
// workflow name: "cloudpipe/run/<name>".
func RunContext(name string) string { return "cloudpipe/run/" + name }

// DeployedDescription describes a deployed workflow:
// "upload to s3://IN · results in s3://OUT".
func DeployedDescription(inputBucket, outputBucket string) string {
	return cut("upload to s3://" + inputBucket + " · results in s3://" + outputBucket)
}

// PlanDescription summarises a plan: "+2 create ~1 update -0 delete".
func PlanDescription(create, update, del int) string {
	return cut("+" + strconv.Itoa(create) + " create ~" + strconv.Itoa(update) +
		" update -" + strconv.Itoa(del) + " delete")
}

// NotedDescription adds to a description the first of n notes that change
// what a merge deploys, and how many there are: "+1 create ~0 update -0
// delete · note: AWS_ACCESS_KEY_ID and … are dropped: …", or "· 2 notes:
// …". The note is cleaned like an error (ErrorDescription) and the whole
// cut at the end; with n of 0 the description is returned as it is.
func NotedDescription(desc string, n int, first string) string {
	if n == 0 {
		return desc
	}
	label := "note"
	if n > 1 {
		label = strconv.Itoa(n) + " notes"
	}
	return ErrorDescription(desc + " · " + label + ": " + first)
}

// RunDescription counts a workflow's runs and names the last result, e.g.
// "41 done, 1 failed · last s3://OUT/Result-…"; without a last result the
// part after "·" is left out. A long result location is cut at the end.
func RunDescription(done, failed int, lastResult string) string {
	s := strconv.Itoa(done) + " done, " + strconv.Itoa(failed) + " failed"
	if lastResult = oneLine(lastResult); lastResult != "" {
		s += " · last " + lastResult
	}
	return cut(s)
}

// StrandedDescription says files wait in a stage's work queue with no task
// to receive them, and why the last task stopped, after the run counts once
// there are runs: "3 waiting · task stopped: CannotPullContainerError: …" or
// "41 done, 1 failed · 3 waiting · task stopped: …". The reason is ECS's
// stoppedReason, cleaned like an error (ErrorDescription) and cut at the
// end.
func StrandedDescription(done, failed, waiting int, reason string) string {
	s := strconv.Itoa(waiting) + " waiting · "
	if reason == "" {
		s += "no task running"
	} else {
		s += "task stopped: " + reason
	}
	return ErrorDescription(runCounts(done, failed) + s)
}

// DeadLetteredDescription says files went to a stage's dead-letter queue
// after starts failed: "3 dead-lettered after 3 failed starts:
// CannotPullContainerError: …", after the run counts once there are runs.
func DeadLetteredDescription(done, failed, dead, starts int, reason string) string {
	s := strconv.Itoa(dead) + " dead-lettered after " + strconv.Itoa(starts) + " failed starts"
	if reason != "" {
		s += ": " + reason
	}
	return ErrorDescription(runCounts(done, failed) + s)
}

// runCounts is "N done, M failed · ", or "" before any run.
func runCounts(done, failed int) string {
	if done+failed == 0 {
		return ""
	}
	return strconv.Itoa(done) + " done, " + strconv.Itoa(failed) + " failed · "
}

// ConsoleURL returns the AWS console page of an S3 bucket, the target of a
// workflow's status.
func ConsoleURL(region, bucket string) string {
	return "https://" + url.PathEscape(region) + ".console.aws.amazon.com/s3/buckets/" +
		url.PathEscape(bucket) + "?region=" + url.QueryEscape(region)
}

// ObjectConsoleURL returns the AWS console page of one S3 object, the target
// of a run status that names the last result.
func ObjectConsoleURL(region, bucket, key string) string {
	return "https://" + url.PathEscape(region) + ".console.aws.amazon.com/s3/object/" +
		url.PathEscape(bucket) + "?region=" + url.QueryEscape(region) + "&prefix=" + url.QueryEscape(key)
}

// ErrorDescription turns an error message into a status description that is
// safe to show anyone who can read the repository: one line, at most
// MaxDescription runes, with URL credentials, query strings and fragments
// removed and anything that looks like a credential replaced by
// "[redacted]". Error chains from AWS and Git can carry presigned URLs,
// tokens in clone URLs or keys echoed back by a tool; the full error belongs
// in the agent's log, not on a public pull request.
//
// Hexadecimal strings of 32 or more digits are redacted too, since a Gitea
// token and a webhook secret look just like a commit ID; name commits in
// the status's commit, not in its description.
func ErrorDescription(msg string) string {
	return cut(redactLine(oneLine(msg)))
}

// redactLine is ErrorDescription's scrubbing of one line, without the cut.
func redactLine(msg string) string {
	msg = urlPattern.ReplaceAllStringFunc(msg, scrubURL)
	for _, p := range secretPatterns {
		msg = p.re.ReplaceAllString(msg, p.repl)
	}
	msg = longWord.ReplaceAllStringFunc(msg, func(w string) string {
		if looksLikeKey(w) {
			return secret.Redacted
		}
		return w
	})
	return msg
}

// urlPattern finds URLs with a scheme; the closing punctuation of a
// sentence or quote is not part of the URL.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]*[^\s"'<>.,;:!?)\]}]`)

// scrubURL drops a URL's user information, query and fragment: the places
// where credentials (basic auth, presigned signatures, ?token=) travel. It
// works on the text rather than through url.Parse, which would re-escape the
// rest of the URL and fail on some of the broken URLs errors quote.
func scrubURL(raw string) string {
	i := strings.Index(raw, "://") + len("://")
	scheme, rest := raw[:i], raw[i:]
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q]
	}
	authority, path := rest, ""
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		authority, path = rest[:slash], rest[slash:]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	return scheme + authority + path
}

// secretPatterns are credentials recognisable by their shape or by the word
// in front of them. Each keeps what names the credential and drops its value.
var secretPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	// GitHub tokens (classic, OAuth, user-to-server, server-to-server,
	// refresh, fine-grained) and GitLab personal access tokens.
	{regexp.MustCompile(`\b(?:gh[opusr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}|glpat-[A-Za-z0-9_-]{16,})`), secret.Redacted},
	// AWS access key IDs.
	{regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`), secret.Redacted},
	// An Authorization header or an auth scheme with its credential.
	{regexp.MustCompile(`(?i)\b(authorization\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?[^\s,;]+`), "${1}" + secret.Redacted},
	{regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}`), "${1} " + secret.Redacted},
	// Assignments to a name that says credential: key=value, key:value
	// and JSON's "key": "value". "key: value" with a space is left alone,
	// because that is how Go error chains read ("read secret: access denied").
	{regexp.MustCompile(`(?i)\b(` + credentialName + `\s*=\s*)` + credentialValue), "${1}" + secret.Redacted},
	{regexp.MustCompile(`(?i)\b(` + credentialName + `:)` + credentialValue), "${1}" + secret.Redacted},
	{regexp.MustCompile(`(?i)("` + credentialName + `"\s*:\s*)"[^"]*"`), "${1}\"" + secret.Redacted + "\""},
}

// credentialName matches a parameter or field name that says it holds a
// credential, such as X-Amz-Signature, client_secret or GITHUB_TOKEN.
const credentialName = `[A-Za-z0-9_-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|credential|signature)s?`

// credentialValue matches the value of an assignment: quoted, or up to the
// next space or separator.
const credentialValue = `(?:"[^"]*"|'[^']*'|[^\s"',;&]+)`

// longWord finds the runs of key-like characters that looksLikeKey judges.
var longWord = regexp.MustCompile(`[A-Za-z0-9+/=_-]{20,}`)

// looksLikeKey reports whether w is random-looking enough to be a key:
// 32 or more hexadecimal digits (tokens, secrets, digests), or a run of 20
// or more letters and digits mixing upper case, lower case and digits
// (base64 keys such as AWS secret access keys), which words, names and
// paths almost never are.
func looksLikeKey(w string) bool {
	hex := 0
	for _, r := range w {
		if (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F') {
			hex++
			if hex >= 32 {
				return true
			}
		} else {
			hex = 0
		}
	}
	var upper, lower, digit bool
	run := 0
	for _, r := range w + " " {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		case r == '+' || r == '/' || r == '=':
			// base64 alphabet: part of the same key
		default:
			if run >= 20 && upper && lower && digit {
				return true
			}
			run, upper, lower, digit = 0, false, false, false
			continue
		}
		run++
	}
	return false
}

// oneLine joins the lines of s and collapses runs of white space and
// control characters to one space.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
	}), " ")
}

// cut shortens s to at most MaxDescription runes, ending a shortened string
// with "…", and never splits a rune.
// RetryDescription is ErrorDescription of msg followed by when the agent
// tries again, " · next try in 2m0s", which is never cut off.
func RetryDescription(msg string, next time.Duration) string {
	suffix := " · next try in " + next.Round(time.Second).String()
	n := utf8.RuneCountInString(suffix)
	d := ErrorDescription(msg)
	if utf8.RuneCountInString(d)+n > MaxDescription {
		d = cutTo(d, MaxDescription-n)
	}
	return d + suffix
}

// cutTo shortens s to at most limit runes, ending it with "…" when cut.
func cutTo(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	n := 0
	for i := range s {
		if n == limit-1 {
			return strings.TrimRightFunc(s[:i], unicode.IsSpace) + "…"
		}
		n++
	}
	return s
}

func cut(s string) string { return cutTo(s, MaxDescription) }
