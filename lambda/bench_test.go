package lambda_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHandle100 handles events of 100 records against an in-process
// kumo, behind the AWS rules, without added latency. It reports the API calls
// per event (the budget: at most 10 SendMessageBatch and 10 RunTask) and the
// time per record, wall (ns/record) and CPU (cpu-ns/record). Both include
// kumo's and the rules' own work (each call the Lambda role signs is
// authorized by the IAM evaluator, a Node.js process whose CPU is not
// counted), since they run in this process, so they bound the handler's cost
// from above; the budget is 1 ms of the handler's own CPU per record.
func BenchmarkHandle100(b *testing.B) {
	s := newStage(b, stageOptions{maxTasks: 100})
	h := s.handler()
	keys := make([]string, 100)
	for k := range keys {
		keys[k] = fmt.Sprintf("in/run/file-%03d.csv", k)
	}
	// One event, handled again and again: kumo ignores clientToken, so each
	// round queues and starts anew, and building the event stays out of
	// the measurement.
	ev := s3Event(b, "in-bucket", keys...)
	s.calls.Reset()
	var cpu0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		if err := h.Handle(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	var cpu1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
	records := float64(b.N * len(keys))
	ops := s.calls.Ops()
	b.ReportMetric(float64(ops["SQS.SendMessageBatch"])/float64(b.N), "sendbatch_calls/op")
	b.ReportMetric(float64(ops["ECS.RunTask"])/float64(b.N), "runtask_calls/op")
	b.ReportMetric(float64(elapsed.Nanoseconds())/records, "ns/record")
	b.ReportMetric(float64(cpuNanos(cpu1)-cpuNanos(cpu0))/records, "cpu-ns/record")
	if ops["SQS.SendMessageBatch"] > 10*b.N || ops["ECS.RunTask"] > 10*b.N {
		b.Errorf("calls per event over budget: %v over %d events", ops, b.N)
	}
}

func cpuNanos(r syscall.Rusage) int64 {
	return r.Utime.Nano() + r.Stime.Nano()
}
