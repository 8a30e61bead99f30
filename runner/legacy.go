package runner

import (
	"maps"
	"slices"
	"strings"
)

// legacyWarning is LOG_LVL when a workflow leaves it out: the original
// runner's default (its runscript read os.getenv('LOG_LVL',
// default='WARNING')).
const legacyWarning = "WARNING"

// legacyEnv is the environment the original cloud_pipe runtime gave an
// algorithm's container, with the old meanings, so that images written for
// its runner keep working: its setup-pipe set output_s3_name to the stage's
// output bucket (the next stage's input in a sequence), sqs to the work
// queue's URL (its runner passed it to ReceiveMessage as QueueUrl), NAME to
// the algorithm's name (the "Result-NAME-file" of result keys) and
// AWS_DEFAULT_REGION and AWS_DEFAULT_OUTPUT from the user's task settings
// (region of the pipeline, "json" by default). The names are those of
// workflow.InjectedVariables except the access keys, which cloudpipe never
// sets (a test holds the two lists equal; the runner may not import the
// workflow package). region is the region the runner works in.
func legacyEnv(c Config, region string) map[string]string {
	return map[string]string{
		"output_s3_name":     c.OutputBucket,
		"sqs":                c.QueueURL,
		"NAME":               c.Algorithm,
		"AWS_DEFAULT_REGION": region,
		"AWS_DEFAULT_OUTPUT": "json",
		"LOG_LVL":            legacyWarning,
	}
}

// withDefaults returns environ with each variable of defaults added that
// environ does not hold with a value: a value already in the container's
// environment wins, which is how a workflow's own variable of the same name
// (set in the task definition) or ECS's own AWS_DEFAULT_REGION
// (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-environment-variables.html)
// is kept. An empty value counts as unset and is replaced.
func withDefaults(environ []string, defaults map[string]string) []string {
	set := map[string]bool{}
	for _, kv := range environ {
		if name, value, _ := strings.Cut(kv, "="); value != "" {
			set[name] = true
		}
	}
	out := make([]string, 0, len(environ)+len(defaults))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, ours := defaults[name]; !ours || set[name] {
			out = append(out, kv) // an empty one of ours is replaced below
		}
	}
	for _, name := range slices.Sorted(maps.Keys(defaults)) {
		if !set[name] && defaults[name] != "" {
			out = append(out, name+"="+defaults[name])
		}
	}
	return out
}
