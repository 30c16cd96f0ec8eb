package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one run's figures; JSON field names are stable for comparison
// over time.
type result struct {
	Machine           string  `json:"machine"`
	Tenants           int     `json:"tenants"`
	Events            int     `json:"events"`
	ReceiverLatencyMS float64 `json:"receiver_latency_ms"`
	Scenario          string  `json:"scenario"`
	Redis             string  `json:"redis"` // "standalone", "cluster of 3 masters" or "given"
	// Rounds are the healthy throughput rounds, each with the raw ceiling
	// (a plain net/http client sending feedbackd's requests, no Kafka)
	// measured just before and just after it; a round's ratio is its rate
	// over the mean of the two. CeilingPerSec is the best ceiling round,
	// DeliveriesPerSec and Ratio the medians of the rounds, WorstRatio the
	// lowest. The same rounds also measure feedbackd's own sender
	// (signing, its transport) without Kafka, Redis or parsing:
	// SenderCeilingPerSec is its best round, SenderRatio the median of the
	// rounds' rates over the mean of the sender's rounds around them.
	Rounds              []round `json:"rounds"`
	CeilingPerSec       float64 `json:"ceiling_per_s"`
	SenderCeilingPerSec float64 `json:"sender_ceiling_per_s"`
	DeliveriesPerSec    float64 `json:"deliveries_per_s"`
	Ratio               float64 `json:"ratio"`
	WorstRatio          float64 `json:"ratio_worst_round"`
	SenderRatio         float64 `json:"ratio_to_sender"`
	// BadRounds are the rounds with the slow or dead tenant getting its
	// share, timed like Rounds; their rates are the other tenants'.
	// OthersPerSec is their median rate, OthersVsHealthy their median
	// ratio over the healthy one.
	BadRounds       []round `json:"bad_rounds,omitempty"`
	OthersPerSec    float64 `json:"others_per_s,omitempty"`
	OthersVsHealthy float64 `json:"others_vs_healthy,omitempty"`
	OfferedPerSec   float64 `json:"latency_offered_per_s"`
	P50MS           float64 `json:"p50_ms"`
	P95MS           float64 `json:"p95_ms"`
	P99MS           float64 `json:"p99_ms"`
	CPUPer1000      float64 `json:"cpu_s_per_1000"`
	// CPU seconds per 1,000 deliveries of what shares the machine in the
	// throughput phase: the receiver, redis-server, and this process
	// (kfake broker and producer).
	OthersCPUPer1000  map[string]float64 `json:"others_cpu_s_per_1000,omitempty"`
	AllocsPerDelivery float64            `json:"allocs_per_delivery"`
	BytesPerDelivery  float64            `json:"alloc_bytes_per_delivery"`
	SustainedPerSec   float64            `json:"latency_sustained_per_s"`
	SustainedP50MS    float64            `json:"sustained_p50_ms"`
	SustainedP95MS    float64            `json:"sustained_p95_ms"`
	SustainedP99MS    float64            `json:"sustained_p99_ms"`
	PeakRSSMiB        float64            `json:"peak_rss_mib"`
	Backlog           int                `json:"backlog,omitempty"`
	BacklogPerSec     float64            `json:"backlog_deliveries_per_s,omitempty"`
	BacklogPeakRSSMiB float64            `json:"backlog_peak_rss_mib,omitempty"`
	FeedbackdCPUCores float64            `json:"feedbackd_cpu_cores"`
}

func printTable(r result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "machine\t%s\n", r.Machine)
	fmt.Fprintf(w, "scenario\t%s, %d tenants, receiver latency %gms, %d events, Redis %s\n", r.Scenario, r.Tenants, r.ReceiverLatencyMS, r.Events, r.Redis)
	for i, rd := range r.Rounds {
		fmt.Fprintf(w, "round %d\t%.0f deliveries/s; raw ceiling %.0f/s before, %.0f/s after: ratio %.2f; sender alone %.0f/s, %.0f/s: %.2f\n",
			i+1, rd.DeliveriesPerSec, rd.CeilingBefore, rd.CeilingAfter, rd.Ratio, rd.SenderBefore, rd.SenderAfter, rd.SenderRatio)
	}
	fmt.Fprintf(w, "raw HTTP ceiling (net/http client)\t%.0f/s, best round\n", r.CeilingPerSec)
	fmt.Fprintf(w, "feedbackd's sender alone, no Kafka\t%.0f/s, best round\n", r.SenderCeilingPerSec)
	fmt.Fprintf(w, "feedbackd end to end\t%.0f deliveries/s, median round\n", r.DeliveriesPerSec)
	fmt.Fprintf(w, "ratio to the raw ceiling\t%.2f median, %.2f worst round\n", r.Ratio, r.WorstRatio)
	fmt.Fprintf(w, "ratio to feedbackd's sender alone\t%.2f median\n", r.SenderRatio)
	for i, rd := range r.BadRounds {
		fmt.Fprintf(w, "round %d with the %s\t%.0f deliveries/s to the others; raw ceiling %.0f/s before, %.0f/s after: ratio %.2f\n", i+1, r.Scenario, rd.DeliveriesPerSec, rd.CeilingBefore, rd.CeilingAfter, rd.Ratio)
	}
	if r.OthersPerSec > 0 {
		fmt.Fprintf(w, "other tenants with the %s\t%.0f deliveries/s, median round; %.2f x healthy (median ratios)\n", r.Scenario, r.OthersPerSec, r.OthersVsHealthy)
	}
	fmt.Fprintf(w, "latency at %.0f/s (p50/p95/p99)\t%.1f / %.1f / %.1f ms\n", r.OfferedPerSec, r.P50MS, r.P95MS, r.P99MS)
	fmt.Fprintf(w, "latency at %.0f/s, half feedbackd's rate\t%.1f / %.1f / %.1f ms\n", r.SustainedPerSec, r.SustainedP50MS, r.SustainedP95MS, r.SustainedP99MS)
	fmt.Fprintf(w, "CPU per 1,000 deliveries\t%.3f s\n", r.CPUPer1000)
	if len(r.OthersCPUPer1000) > 0 {
		names := slices.Sorted(maps.Keys(r.OthersCPUPer1000))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %.3f s", n, r.OthersCPUPer1000[n])
		}
		fmt.Fprintf(w, "  sharing the machine, per 1,000\t%s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "allocations per delivery\t%.0f (%.0f bytes), whole process\n", r.AllocsPerDelivery, r.BytesPerDelivery)
	fmt.Fprintf(w, "peak RSS\t%.0f MiB\n", r.PeakRSSMiB)
	if r.Backlog > 0 {
		fmt.Fprintf(w, "backlog of %d\t%.0f deliveries/s, peak RSS %.0f MiB\n", r.Backlog, r.BacklogPerSec, r.BacklogPeakRSSMiB)
	}
	w.Flush()
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}
