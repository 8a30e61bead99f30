package status_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudpipe/cloudpipe/status"
)

func TestContexts(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{status.WorkflowContext("foo"), "cloudpipe/foo"},
		{status.RunContext("foo"), "cloudpipe/run/foo"},
		{status.PlanContext, "cloudpipe/plan"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestDescriptions(t *testing.T) {
	long := strings.Repeat("b", 63)
	for _, tc := range []struct {
		name, got, want string
	}{
		{"deployed", status.DeployedDescription("in", "out"), "upload to s3://in · results in s3://out"},
		{"deployed long buckets", status.DeployedDescription(long, long),
			"upload to s3://" + long + " · results in s3://" + long[:42] + "…"},
		{"plan", status.PlanDescription(2, 1, 0), "+2 create ~1 update -0 delete"},
		{"plan big", status.PlanDescription(120, 0, 7), "+120 create ~0 update -7 delete"},
		{"plan without notes", status.NotedDescription(status.PlanDescription(1, 0, 0), 0, "unused"), "+1 create ~0 update -0 delete"},
		{"plan with a note", status.NotedDescription(status.PlanDescription(1, 0, 0), 1, "AWS_ACCESS_KEY_ID is dropped"),
			"+1 create ~0 update -0 delete · note: AWS_ACCESS_KEY_ID is dropped"},
		{"plan with notes, cut", status.NotedDescription(status.PlanDescription(0, 2, 0), 3, "NAME is set by the runner "+strings.Repeat("z", 200)),
			"+0 create ~2 update -0 delete · 3 notes: NAME is set by the runner " + strings.Repeat("z", 139-len("+0 create ~2 update -0 delete · 3 notes: NAME is set by the runner ")+len("·")-1) + "…"},
		{"run", status.RunDescription(41, 1, "s3://out/Result-a.txt"), "41 done, 1 failed · last s3://out/Result-a.txt"},
		{"run without result", status.RunDescription(0, 0, ""), "0 done, 0 failed"},
		{"run result on lines", status.RunDescription(1, 0, "s3://out/a\nb"), "1 done, 0 failed · last s3://out/a b"},
		{"run long result", status.RunDescription(3, 0, "s3://out/Result-"+strings.Repeat("x", 200)),
			"3 done, 0 failed · last s3://out/Result-" + strings.Repeat("x", 139-len("3 done, 0 failed · last s3://out/Result-")+1) + "…"},
		{"stranded", status.StrandedDescription(0, 0, 3, "CannotPullContainerError: no such host"),
			"3 waiting · task stopped: CannotPullContainerError: no such host"},
		{"stranded after runs", status.StrandedDescription(4, 1, 2, ""), "4 done, 1 failed · 2 waiting · no task running"},
		{"stranded long reason", status.StrandedDescription(0, 0, 3, "CannotPullContainerError: "+strings.Repeat("y", 200)),
			"3 waiting · task stopped: CannotPullContainerError: " + strings.Repeat("y", 139-len("3 waiting · task stopped: CannotPullContainerError: ")+len("·")-1) + "…"},
		{"stranded reason with a URL", status.StrandedDescription(0, 0, 1, "pull https://user:pw@registry.invalid/v2/x?token=abc failed"),
			"1 waiting · task stopped: pull https://registry.invalid/v2/x failed"},
		{"dead-lettered", status.DeadLetteredDescription(0, 0, 3, 3, "CannotPullContainerError: no such host"),
			"3 dead-lettered after 3 failed starts: CannotPullContainerError: no such host"},
		{"dead-lettered after runs", status.DeadLetteredDescription(2, 0, 1, 3, ""), "2 done, 0 failed · 1 dead-lettered after 3 failed starts"},
		{"console", status.ConsoleURL("eu-west-1", "out"), "https://eu-west-1.console.aws.amazon.com/s3/buckets/out?region=eu-west-1"},
		{"object console", status.ObjectConsoleURL("us-east-1", "out", "in/Result-a b.txt"),
			"https://us-east-1.console.aws.amazon.com/s3/object/out?region=us-east-1&prefix=in%2FResult-a+b.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got  %q\nwant %q", tc.got, tc.want)
			}
			if n := utf8.RuneCountInString(tc.got); n > status.MaxDescription {
				t.Errorf("%d runes, more than %d", n, status.MaxDescription)
			}
		})
	}
}

func TestDescriptionCutsRunes(t *testing.T) {
	for _, tc := range []struct{ name, result string }{
		{"two-byte", "s3://out/" + strings.Repeat("é", 300)},
		{"three-byte", "s3://out/" + strings.Repeat("€", 300)},
		{"four-byte", "s3://out/" + strings.Repeat("🦀", 300)},
		{"mixed", "s3://out/" + strings.Repeat("aé€🦀", 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := status.RunDescription(1, 2, tc.result)
			if !utf8.ValidString(got) {
				t.Fatalf("%q is not valid UTF-8", got)
			}
			if n := utf8.RuneCountInString(got); n != status.MaxDescription {
				t.Errorf("%d runes, want exactly %d", n, status.MaxDescription)
			}
			if !strings.HasSuffix(got, "…") {
				t.Errorf("%q does not end with …", got)
			}
			if prefix := strings.TrimSuffix(got, "…"); !strings.HasPrefix("1 done, 2 failed · last "+tc.result, prefix) {
				t.Errorf("%q is not a prefix of the full text plus …", got)
			}
		})
	}
	exact := strings.Repeat("é", status.MaxDescription)
	if got := status.ErrorDescription(exact); got != exact {
		t.Errorf("a description of exactly %d runes was changed to %q", status.MaxDescription, got)
	}
}

func TestErrorDescription(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "create queue cp-foo-0: AccessDenied", "create queue cp-foo-0: AccessDenied"},
		{"url credentials and query", `fetch https://user:secret@host/x?token=abc: 401`, "fetch https://host/x: 401"},
		{"token in user only", "clone https://ghp_0123456789abcdefghijABCDEFGHIJ@github.com/o/r.git failed",
			"clone https://github.com/o/r.git failed"},
		{"presigned", `GET "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=deadbeef#frag": 403`,
			`GET "https://b.s3.amazonaws.com/k": 403`},
		{"url at end of sentence", "see https://h/p?q=1.", "see https://h/p."},
		{"broken url", "parse http://u:p@[::1/x?tok=1: invalid", "parse http://[::1/x: invalid"},
		{"github token", "bad credentials ghp_0123456789abcdefghijABCDEFGHIJ here", "bad credentials [redacted] here"},
		{"fine-grained token", "token github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "token [redacted]"},
		{"aws key id", "key AKIAIOSFODNN7EXAMPLE rejected", "key [redacted] rejected"},
		{"aws secret key", "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY leaked", "secret [redacted] leaked"},
		{"hex token", "gitea token 3f5e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f used", "gitea token [redacted] used"},
		{"bearer", "sent Authorization: Bearer abc.def.ghi to host", "sent Authorization: [redacted] to host"},
		{"authorization token", "header authorization=token 1234abcd", "header authorization=[redacted]"},
		{"bare bearer", "bearer eyJhbGciOiJIUzI1NiJ9xx rejected", "bearer [redacted] rejected"},
		{"key=value", "env AWS_SECRET_ACCESS_KEY=abc123 DB_PASSWORD='p w' api_key=x", "env AWS_SECRET_ACCESS_KEY=[redacted] DB_PASSWORD=[redacted] api_key=[redacted]"},
		{"key:value", "password:hunter2 given", "password:[redacted] given"},
		{"json", `body {"token": "abc", "name": "x"}`, `body {"token": "[redacted]", "name": "x"}`},
		{"go error chain kept", "read secret: AccessDeniedException: not authorized", "read secret: AccessDeniedException: not authorized"},
		{"one line", "first\nsecond\r\n\tthird  fourth", "first second third fourth"},
		{"control characters", "a\x00b\x1bc", "a b c"},
		{"names kept", "role cp-my-long-workflow-name-0-task arn:aws:iam::123456789012:role/x",
			"role cp-my-long-workflow-name-0-task arn:aws:iam::123456789012:role/x"},
		{"s3 url kept", "upload s3://out/in/Result-foo-file.txt: 403", "upload s3://out/in/Result-foo-file.txt: 403"},
		{"empty", "", ""},
		{"long", strings.Repeat("word ", 100), strings.TrimSpace(strings.Repeat("word ", 28)) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := status.ErrorDescription(tc.in)
			if got != tc.want {
				t.Errorf("ErrorDescription(%q)\ngot  %q\nwant %q", tc.in, got, tc.want)
			}
			if utf8.RuneCountInString(got) > status.MaxDescription || strings.ContainsAny(got, "\n\r") {
				t.Errorf("%q is longer than %d runes or not one line", got, status.MaxDescription)
			}
		})
	}
}

func TestRetryDescription(t *testing.T) {
	long := strings.Repeat("word ", 60)
	tests := []struct {
		msg  string
		next time.Duration
		want string
	}{
		{"create queue: throttled", 2 * time.Minute, "create queue: throttled · next try in 2m0s"},
		{"x", 1500 * time.Millisecond, "x · next try in 2s"},
	}
	for _, tt := range tests {
		if got := status.RetryDescription(tt.msg, tt.next); got != tt.want {
			t.Errorf("RetryDescription(%q, %v) = %q, want %q", tt.msg, tt.next, got, tt.want)
		}
	}
	got := status.RetryDescription(long, 10*time.Minute)
	if n := utf8.RuneCountInString(got); n > status.MaxDescription || !strings.HasSuffix(got, "… · next try in 10m0s") {
		t.Errorf("long message: %q (%d runes), want it cut before the retry time, within %d", got, n, status.MaxDescription)
	}
}
