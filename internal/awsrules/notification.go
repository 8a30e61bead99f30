package awsrules

import (
	"encoding/xml"
	"net/http"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// notificationRule is one destination entry of a notification
// configuration (queue, topic or Lambda function) as the rules read it.
type notificationRule struct {
	Events  []string `xml:"Event"`
	Filters []struct {
		Name  string
		Value string
	} `xml:"Filter>S3Key>FilterRule"`
}

// prefixSuffix returns the rule's key filter; a missing one is "", which
// every key matches.
func (n notificationRule) prefixSuffix() (prefix, suffix string) {
	for _, f := range n.Filters {
		switch strings.ToLower(f.Name) {
		case "prefix":
			prefix = f.Value
		case "suffix":
			suffix = f.Value
		}
	}
	return prefix, suffix
}

// notificationRules reads the entries of a PutBucketNotificationConfiguration
// body, whatever their destination.
func notificationRules(body []byte) ([]notificationRule, bool) {
	var doc struct {
		Queues  []notificationRule `xml:"QueueConfiguration"`
		Topics  []notificationRule `xml:"TopicConfiguration"`
		Lambdas []notificationRule `xml:"CloudFunctionConfiguration"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		return nil, false
	}
	return append(append(doc.Queues, doc.Topics...), doc.Lambdas...), true
}

// The two answers S3 gives to overlapping rules, both 400 InvalidArgument:
// rules without a key filter that share an event type, and rules that share
// an event type and whose filters could both match one key.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html
const (
	msgConfigurationsOverlap = "Configurations overlap. Configurations on the same bucket cannot share a common event type."
	msgAmbiguousFilters      = "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type."
)

// checkNotificationOverlap refuses a notification configuration with two
// rules for a common event type whose key filters overlap: "Notification
// configurations that use Filter cannot define filtering rules with
// overlapping prefixes, overlapping suffixes, or prefix and suffix
// overlapping" (page cited above). The call replaces the bucket's whole
// configuration, so a rule added next to those already on the bucket (as
// provision does: read, append, put) is checked against them here.
//
// kumo refuses the same overlaps with InvalidArgument but a message of its
// own; the proxy gives S3's.
func checkNotificationOverlap(_ *Proxy, c call) *faultproxy.APIError {
	rules, ok := notificationRules(c.body)
	if !ok {
		return nil // kumo answers the malformed document
	}
	for i := range rules {
		for j := i + 1; j < len(rules); j++ {
			if msg := overlap(rules[i], rules[j]); msg != "" {
				return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: msg}
			}
		}
	}
	return nil
}

// overlap returns S3's message when a and b overlap, else "".
func overlap(a, b notificationRule) string {
	if !eventsIntersect(a.Events, b.Events) {
		return ""
	}
	ap, as := a.prefixSuffix()
	bp, bs := b.prefixSuffix()
	if ap == "" && as == "" && bp == "" && bs == "" {
		return msgConfigurationsOverlap
	}
	// Some key matches both when one prefix extends the other and one
	// suffix extends the other.
	prefixes := strings.HasPrefix(ap, bp) || strings.HasPrefix(bp, ap)
	suffixes := strings.HasSuffix(as, bs) || strings.HasSuffix(bs, as)
	if prefixes && suffixes {
		return msgAmbiguousFilters
	}
	return ""
}

// eventsIntersect reports whether two event lists share an event type,
// where "s3:ObjectCreated:*" covers every "s3:ObjectCreated:..." type.
func eventsIntersect(a, b []string) bool {
	covers := func(x, y string) bool {
		return x == y || (strings.HasSuffix(x, "*") && strings.HasPrefix(y, strings.TrimSuffix(x, "*")))
	}
	for _, x := range a {
		for _, y := range b {
			if covers(x, y) || covers(y, x) {
				return true
			}
		}
	}
	return false
}
