package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// Metrics of the pipeline. Label values come from fixed sets: never a
// tenant id or a URL.
type Metrics struct {
	consumed          *prometheus.CounterVec
	invalid           *prometheus.CounterVec
	skipped           *prometheus.CounterVec
	attempts          *prometheus.CounterVec
	attemptDuration   *prometheus.HistogramVec
	deliveries        *prometheus.CounterVec
	endToEnd          *prometheus.HistogramVec
	retries           prometheus.Counter
	retriesHeld       prometheus.Gauge
	deferred          *prometheus.CounterVec
	parked            prometheus.Gauge
	paused            prometheus.Gauge
	dependencySlow    prometheus.Counter
	dlq               *prometheus.CounterVec
	deadLettersLost   *prometheus.CounterVec
	outcomes          prometheus.Counter
	outcomeErrors     prometheus.Counter
	inflight          prometheus.Gauge
	slots             prometheus.Gauge
	lag               *prometheus.GaugeVec
	configUnavailable prometheus.Counter
	produceErrors     prometheus.Counter
	fetchErrors       prometheus.Counter
	commitErrors      prometheus.Counter
	rewinds           prometheus.Counter
	disabled          *prometheus.CounterVec
}

// latencyBuckets resolve 1 ms to 30 s.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}

// endToEndBuckets also cover time spent waiting for retries.
var endToEndBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14400, 43200}

func newMetrics(reg prometheus.Registerer, inputTopics []string) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		consumed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_events_consumed_total",
			Help: "Records read from the input topics and retry tiers, by topic.",
		}, []string{"topic"}),
		invalid: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_events_invalid_total",
			Help: "Records that are not valid feedback events (dead-lettered as invalid_event), by reason: invalid_json, schema, too_large, retry_state.",
		}, []string{"reason"}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_events_skipped_total",
			Help: "Valid events not delivered on purpose, by reason: no_config, channel_not_selected, campaign_not_enabled, status_not_delivered.",
		}, []string{"reason"}),
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_delivery_attempts_total",
			Help: "HTTP delivery attempts by channel and outcome: success, retryable (408/425/429/5xx), rejected (other status), error (no response).",
		}, []string{"channel", "outcome"}),
		attemptDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedbackd_delivery_duration_seconds",
			Help:    "Duration of one delivery attempt, by outcome.",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_deliveries_total",
			Help: "Events that reached a final outcome, by channel, feedback status and result (delivered, dead_lettered).",
		}, []string{"channel", "status", "result"}),
		endToEnd: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedbackd_end_to_end_seconds",
			Help:    "Time from the input record's timestamp to its final outcome (delivered or dead-lettered), by channel.",
			Buckets: endToEndBuckets,
		}, []string{"channel"}),
		retries: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_retries_scheduled_total",
			Help: "Failed attempts handed to a retry tier topic.",
		}),
		retriesHeld: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_retries_held",
			Help: "Retry records read and waiting in memory for their due time.",
		}),
		deferred: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_deliveries_deferred_total",
			Help: "Events put back in a retry tier without an attempt, by reason: circuit_open (the endpoint's breaker is open), endpoint_busy (its in-flight limit is reached and too many events already wait for it), in_flight (another attempt for the same webhook-id is in flight: a copy read again after a crash).",
		}, []string{"reason"}),
		parked: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_deliveries_parked",
			Help: "Events waiting, without a delivery slot, for their endpoint's in-flight limit (bounded by delivery.max_parked).",
		}),
		paused: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_consumption_paused",
			Help: "1 while fetching is paused because a dependency (Redis) does not answer; records already read still run.",
		}),
		dependencySlow: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_dependency_slow_total",
			Help: "Checks of Redis (every second) that got no answer within 2 s; fetching pauses after 3 in a row, at once on an error.",
		}),
		dlq: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_dlq_records_total",
			Help: "Records written to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		deadLettersLost: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_dead_letters_lost_total",
			Help: "Dead letters the broker refused for good, even without their value, by reason: the record is left at its source offset until retention removes it. Should always be 0.",
		}, []string{"reason"}),
		outcomes: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_outcome_records_total",
			Help: "Records written to the outcomes topic (attempts, outcomes and endpoint events).",
		}),
		outcomeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_outcome_produce_errors_total",
			Help: "Failed writes to the outcomes topic (retried, but for records the broker refuses for good).",
		}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_inflight_deliveries",
			Help: "Records being processed now (bounded by feedbackd_delivery_slots).",
		}),
		slots: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackd_delivery_slots",
			Help: "Delivery slots now: delivery.concurrency, growing up to delivery.max_inflight while all are taken by slow endpoints.",
		}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedbackd_consumer_lag_records",
			Help: "Records behind the group's committed offset, by topic (input and retry tiers).",
		}, []string{"topic"}),
		configUnavailable: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_config_unavailable_total",
			Help: "Config lookups that failed because Redis was unreachable or not loaded; the event waits, it is not skipped.",
		}),
		produceErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_produce_errors_total",
			Help: "Failed writes to retry or dead-letter topics (each is retried).",
		}),
		fetchErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_fetch_errors_total",
			Help: "Errors returned while fetching from Kafka.",
		}),
		commitErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_commit_errors_total",
			Help: "Failed offset commits (retried on the next commit).",
		}),
		rewinds: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_partition_rewinds_total",
			Help: "Times the Kafka client read a partition again from an offset it had read (a reset after a broker reported lost records); the re-read records are checked against dedupe.",
		}),
		disabled: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_endpoints_disabled_total",
			Help: "Configs disabled by feedbackd, by reason: gone (the endpoint answered 410), failing (no successful delivery for delivery.disable_after). Their events are dead-lettered as endpoint_disabled until they are enabled again.",
		}, []string{"reason"}),
	}
	for _, t := range inputTopics {
		m.consumed.WithLabelValues(t)
		m.lag.WithLabelValues(t)
	}
	for _, r := range []string{deferCircuitOpen, deferEndpointBusy, deferInFlight} {
		m.deferred.WithLabelValues(r)
	}
	for _, r := range []string{causeGone, causeFailing} {
		m.disabled.WithLabelValues(r)
	}
	for _, r := range dlq.Reasons {
		m.dlq.WithLabelValues(r)
		m.deadLettersLost.WithLabelValues(r)
	}
	for _, r := range []string{"invalid_json", "schema", "too_large", "retry_state"} {
		m.invalid.WithLabelValues(r)
	}
	for _, r := range []string{webhook.SkipNoConfig, webhook.SkipChannel, webhook.SkipCampaign, webhook.SkipStatus} {
		m.skipped.WithLabelValues(r)
	}
	return m
}
