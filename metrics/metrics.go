// Package metrics holds the agent's Prometheus metrics and the hooks that
// feed them: passes, workflows by state, AWS calls, Git polls, commit
// statuses and webhook deliveries.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's collectors, registered on their own registry so
// tests can make as many as they like.
type Metrics struct {
	reg *prometheus.Registry

	passes       *prometheus.CounterVec   // outcome: applied, skipped, failed
	passDuration *prometheus.HistogramVec // outcome
	workflows    *prometheus.GaugeVec     // state
	awsCalls     *prometheus.CounterVec   // service, operation, outcome
	gitPolls     *prometheus.CounterVec   // outcome: unchanged, moved, error
	statuses     *prometheus.CounterVec   // outcome: posted, unchanged, error
	webhooks     *prometheus.CounterVec   // outcome
	drift        *prometheus.CounterVec   // kind
	notify       *prometheus.CounterVec   // outcome: sent, dropped_full, dropped_failed
}

// New creates the collectors on a new registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_passes_total", Help: "Reconcile passes by outcome (applied, skipped: branch unchanged, failed).",
		}, []string{"outcome"}),
		passDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cloudpipe_pass_duration_seconds", Help: "Duration of reconcile passes.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9), // 10ms .. ~11min
		}, []string{"outcome"}),
		workflows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudpipe_workflows", Help: "Workflows by state after the last applied pass.",
		}, []string{"state"}),
		awsCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_aws_calls_total", Help: "AWS API calls by service, operation and outcome (ok, or the error code).",
		}, []string{"service", "operation", "outcome"}),
		gitPolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_git_polls_total", Help: "Polls of the config repository by outcome (unchanged, moved, error).",
		}, []string{"outcome"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_statuses_total", Help: "Commit statuses by outcome (posted, unchanged: identical state not re-posted, error).",
		}, []string{"outcome"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_webhook_deliveries_total", Help: "Webhook deliveries by outcome.",
		}, []string{"outcome"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_drift_repairs_total", Help: "Resources and settings changed or deleted outside cloudpipe that a drift repair put back, by kind (sqs_queue, lambda_function, ...).",
		}, []string{"kind"}),
		notify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudpipe_notifications_total", Help: "Notifications by outcome (sent, dropped_full: queue full, dropped_failed: retries ran out or refused).",
		}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.passes, m.passDuration, m.workflows, m.awsCalls, m.gitPolls, m.statuses, m.webhooks, m.drift, m.notify,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Pass records one pass.
func (m *Metrics) Pass(outcome string, took time.Duration) {
	m.passes.WithLabelValues(outcome).Inc()
	m.passDuration.WithLabelValues(outcome).Observe(took.Seconds())
}

// Workflows sets the number of workflows in each state; states not given
// are set to zero so a state that empties does not keep its old count.
func (m *Metrics) Workflows(byState map[string]int) {
	m.workflows.Reset()
	for s, n := range byState {
		m.workflows.WithLabelValues(s).Set(float64(n))
	}
}

// GitPoll records one poll of the repository.
func (m *Metrics) GitPoll(outcome string) { m.gitPolls.WithLabelValues(outcome).Inc() }

// Status records one commit status the agent meant to post.
func (m *Metrics) Status(outcome string) { m.statuses.WithLabelValues(outcome).Inc() }

// Webhook records one webhook delivery.
func (m *Metrics) Webhook(outcome string) { m.webhooks.WithLabelValues(outcome).Inc() }

// DriftRepaired records one resource or setting a drift repair put back.
func (m *Metrics) DriftRepaired(kind string) {
	m.drift.WithLabelValues(strings.ReplaceAll(kind, " ", "_")).Inc()
}

// Notification records one notification's outcome.
func (m *Metrics) Notification(outcome string) { m.notify.WithLabelValues(outcome).Inc() }

// AWSMiddleware is an aws.Config APIOptions entry that counts every call by
// service, operation and outcome.
func (m *Metrics) AWSMiddleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("cloudpipeMetrics",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			outcome := "ok"
			if err != nil {
				outcome = "error"
				var ae smithy.APIError
				if errors.As(err, &ae) {
					outcome = ae.ErrorCode()
				}
			}
			m.awsCalls.WithLabelValues(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), outcome).Inc()
			return out, md, err
		}), middleware.After)
}
