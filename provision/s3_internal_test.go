package provision

import "testing"

func TestOverlappingRule(t *testing.T) {
	ours := NotificationRule{ID: "cloudpipe-x", Events: []string{"s3:ObjectCreated:*"}}
	rule := func(id string, prefix, suffix string, events ...string) NotificationRule {
		return NotificationRule{ID: id, Events: events, Prefix: prefix, Suffix: suffix}
	}
	tests := []struct {
		name  string
		ours  NotificationRule
		rules []NotificationRule
		want  string // ID of the rule found, "" for none
	}{
		{"no rules", ours, nil, ""},
		{"other event type", ours, []NotificationRule{rule("audit", "", "", "s3:ObjectRemoved:*")}, ""},
		{"same event, no filters", ours, []NotificationRule{rule("all", "", "", "s3:ObjectCreated:*")}, "all"},
		{"narrower event, filtered: ours has none", ours, []NotificationRule{rule("up", "uploads/", ".csv", "s3:ObjectCreated:Put")}, "up"},
		{"first of several", ours, []NotificationRule{rule("audit", "", "", "s3:ObjectRemoved:Delete"), rule("a", "x/", "", "s3:ObjectCreated:Copy"), rule("b", "", "", "s3:ObjectCreated:*")}, "a"},
		{"disjoint prefixes", rule("ours", "in/", "", "s3:ObjectCreated:*"), []NotificationRule{rule("up", "uploads/", "", "s3:ObjectCreated:Put")}, ""},
		{"nested prefixes", rule("ours", "in/", "", "s3:ObjectCreated:*"), []NotificationRule{rule("deep", "in/deep/", "", "s3:ObjectCreated:Put")}, "deep"},
		{"same prefix, disjoint suffixes", rule("ours", "in/", ".csv", "s3:ObjectCreated:*"), []NotificationRule{rule("json", "in/", ".json", "s3:ObjectCreated:*")}, ""},
		{"prefix and suffix overlapping", rule("ours", "in/", ".csv", "s3:ObjectCreated:*"), []NotificationRule{rule("any", "", "s.csv", "s3:ObjectCreated:Post")}, "any"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := overlappingRule(tt.rules, tt.ours)
			if ok != (tt.want != "") || got.ID != tt.want {
				t.Errorf("overlappingRule = %q, %v; want %q", got.ID, ok, tt.want)
			}
		})
	}
}
