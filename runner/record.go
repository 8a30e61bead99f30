package runner

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// writeRecord stores rec in the state bucket under its contract.RunRecordKey.
func (w *worker) writeRecord(ctx context.Context, rec contract.RunRecord, bucket, key, receipt string) error {
	body, err := rec.Encode()
	if err != nil {
		return err
	}
	rk := contract.RunRecordKey(rec.Workflow, rec.Stage, rec.Finished, rec.Outcome, bucket, key, receipt)
	_, err = w.state.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(w.c.StateBucket),
		Key:         aws.String(rk),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("put run record s3://%s/%s: %w", w.c.StateBucket, rk, err)
	}
	return nil
}
