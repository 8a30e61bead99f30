package runner

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Transfer exposes the runner's download and upload to
// BenchmarkRunnerTransfer, which compares them with plain SDK calls.
type Transfer struct{ t *transfer }

// NewTransfer returns the transfer a runner with c would use.
func NewTransfer(cfg aws.Config, c Config) (*Transfer, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(cfg, s3Options(c))
	return &Transfer{newTransfer(client, c)}, nil
}

func (t *Transfer) Download(ctx context.Context, bucket, key string, f *os.File) (int64, error) {
	return t.t.download(ctx, bucket, key, f)
}

func (t *Transfer) Upload(ctx context.Context, src, bucket, key string) (int64, bool, error) {
	return t.t.upload(ctx, src, bucket, key, nil)
}

// RunWithClock is Run whose clock of SQS's 12 h visibility limit is now, so
// a test can move the runner to that limit along with the AWS rules'
// clock (testenv.AdvanceAWSClock) without waiting 12 h.
func RunWithClock(ctx context.Context, awsCfg aws.Config, c Config, log *slog.Logger, now func() time.Time) error {
	return run(ctx, awsCfg, c, log, now)
}
