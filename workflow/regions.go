package workflow

// regionPartition maps every AWS region a workflow may name to its ARN
// partition. The list is the commercial, GovCloud and China regions of
// aws-sdk-go-v2 v1.48.0 (internal/endpoints/awsrulesfn/partitions.json),
// without the "-global" pseudo-regions; update it from there when AWS opens a
// region. Isolated partitions (aws-iso*, aws-eusc) are left out on purpose:
// cloudpipe is not deployed there.
var regionPartition = map[string]string{
	"af-south-1":     "aws",
	"ap-east-1":      "aws",
	"ap-east-2":      "aws",
	"ap-northeast-1": "aws",
	"ap-northeast-2": "aws",
	"ap-northeast-3": "aws",
	"ap-south-1":     "aws",
	"ap-south-2":     "aws",
	"ap-southeast-1": "aws",
	"ap-southeast-2": "aws",
	"ap-southeast-3": "aws",
	"ap-southeast-4": "aws",
	"ap-southeast-5": "aws",
	"ap-southeast-6": "aws",
	"ap-southeast-7": "aws",
	"ca-central-1":   "aws",
	"ca-west-1":      "aws",
	"eu-central-1":   "aws",
	"eu-central-2":   "aws",
	"eu-north-1":     "aws",
	"eu-south-1":     "aws",
	"eu-south-2":     "aws",
	"eu-west-1":      "aws",
	"eu-west-2":      "aws",
	"eu-west-3":      "aws",
	"il-central-1":   "aws",
	"me-central-1":   "aws",
	"me-south-1":     "aws",
	"me-west-1":      "aws",
	"mx-central-1":   "aws",
	"sa-east-1":      "aws",
	"sa-west-1":      "aws",
	"us-east-1":      "aws",
	"us-east-2":      "aws",
	"us-west-1":      "aws",
	"us-west-2":      "aws",

	"us-gov-east-1": "aws-us-gov",
	"us-gov-west-1": "aws-us-gov",

	"cn-north-1":     "aws-cn",
	"cn-northwest-1": "aws-cn",
}

// regionSuggestion returns the known region s was probably meant to be
// (US_EAST_1, us-east1, "us-east-1 "), or "".
func regionSuggestion(s string) string {
	norm := make([]byte, 0, len(s))
	for i := 0; i < len(s) && i < 32; i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			norm = append(norm, c+'a'-'A')
		case 'a' <= c && c <= 'z', isDigit(c):
			norm = append(norm, c)
		}
	}
	for r := range regionPartition {
		if squash(r) == string(norm) {
			return r
		}
	}
	return ""
}

// squash drops the hyphens of a region name.
func squash(r string) string {
	b := make([]byte, 0, len(r))
	for i := 0; i < len(r); i++ {
		if r[i] != '-' {
			b = append(b, r[i])
		}
	}
	return string(b)
}

// IsRegion reports whether region is an AWS region code a workflow may name.
func IsRegion(region string) bool { return regionPartition[region] != "" }
