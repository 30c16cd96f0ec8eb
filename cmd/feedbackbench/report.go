package main

import (
	"cmp"
	"fmt"
	"io"
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
	Machine           string    `json:"machine"`
	Tenants           int       `json:"tenants"`
	Events            int       `json:"events"`
	ReceiverLatencyMS float64   `json:"receiver_latency_ms"`
	Scenario          string    `json:"scenario"`
	Redis             string    `json:"redis"` // "standalone", "cluster of 3 masters" or "given"
	TLS               bool      `json:"tls"`   // the receiver serves HTTPS
	Hosts             int       `json:"hosts"` // endpoint hosts
	FileLimit         fileLimit `json:"open_files"`
	Ports             portRange `json:"ephemeral_ports"`
	// Outcomes is --outcomes: with "both", the figures are those of
	// feedbackd with outcomes off, OutcomesOn those with them on, from
	// rounds alternating with them, and OnVsOff compares the two.
	Outcomes string `json:"outcomes"`
	// CeilingPerSec is the best raw ceiling round (a plain net/http
	// client sending feedbackd's requests, no Kafka), SenderCeilingPerSec
	// the best round of feedbackd's own sender (signing, its transport)
	// without Kafka, Redis or parsing.
	CeilingPerSec       float64 `json:"ceiling_per_s"`
	SenderCeilingPerSec float64 `json:"sender_ceiling_per_s"`
	figures
	OutcomesOn *figures `json:"outcomes_on,omitempty"`
	OnVsOff    *onVsOff `json:"outcomes_on_vs_off,omitempty"`
	// BadRounds are the rounds with the slow or dead tenant getting its
	// share, timed like Rounds; their rates are the other tenants'.
	// OthersPerSec is their median rate; OthersVsHealthy is the median,
	// OthersWorstPair the least, of each one's ratio to the ceiling over
	// that of the healthy round just before it.
	BadRounds       []round `json:"bad_rounds,omitempty"`
	OthersPerSec    float64 `json:"others_per_s,omitempty"`
	OthersVsHealthy float64 `json:"others_vs_healthy,omitempty"`
	OthersWorstPair float64 `json:"others_vs_healthy_worst_pair,omitempty"`
	// FeedbackdLog counts the warnings and errors feedbackd logged during
	// the run, by message ("3 x ERROR: dependency down: ...").
	FeedbackdLog    []string `json:"feedbackd_log"`
	OfferedPerSec   float64  `json:"latency_offered_per_s"`
	P50MS           float64  `json:"p50_ms"`
	P95MS           float64  `json:"p95_ms"`
	P99MS           float64  `json:"p99_ms"`
	SustainedPerSec float64  `json:"latency_sustained_per_s"`
	SustainedP50MS  float64  `json:"sustained_p50_ms"`
	SustainedP95MS  float64  `json:"sustained_p95_ms"`
	SustainedP99MS  float64  `json:"sustained_p99_ms"`
	// GCs and SustainedGCs are the garbage collections feedbackd ran in
	// each latency phase's measured part (-1: not read).
	GCs          float64 `json:"latency_gcs"`
	SustainedGCs float64 `json:"sustained_latency_gcs"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	// MemoryAtPeak is feedbackd's heap and stacks when they were largest
	// in the throughput rounds; PerInflightKB is the largest RSS sampled
	// there over the most deliveries in flight seen there.
	MemoryAtPeak      memPeak `json:"memory_at_peak"`
	PerInflightKB     float64 `json:"peak_rss_per_inflight_kb"`
	GOMEMLIMIT        string  `json:"gomemlimit"` // feedbackd's, "" if none
	Backlog           int     `json:"backlog,omitempty"`
	BacklogPerSec     float64 `json:"backlog_deliveries_per_s,omitempty"`
	BacklogPeakRSSMiB float64 `json:"backlog_peak_rss_mib,omitempty"`
	FeedbackdCPUCores float64 `json:"feedbackd_cpu_cores"`
}

// figures are what the healthy throughput rounds measured. Each round has
// the ceilings measured just before and just after it; a round's ratio is
// its rate over the mean of the two. DeliveriesPerSec and Ratio are the
// medians of the rounds, WorstRatio the lowest, SenderRatio the median of
// the rounds' rates over the mean of the sender's rounds around them.
type figures struct {
	Rounds           []round `json:"rounds"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	Ratio            float64 `json:"ratio"`
	WorstRatio       float64 `json:"ratio_worst_round"`
	SenderRatio      float64 `json:"ratio_to_sender"`
	CPUPer1000       float64 `json:"cpu_s_per_1000"`
	// SteadyCPUPer1000 is CPUPer1000 over the 1 s intervals of the
	// rounds with every slot in use and no dial (0 if none): without the
	// first --concurrency deliveries, which each dial (the round starts
	// without connections), nor the last ones, as the slots empty, nor an
	// interval in which feedbackd dialled. SteadyShare is the share of the
	// rounds' deliveries made in those intervals.
	SteadyCPUPer1000 float64 `json:"steady_cpu_s_per_1000,omitempty"`
	SteadyShare      float64 `json:"steady_share,omitempty"`
	// DialsPer1000 are feedbackd's dials per 1,000 deliveries
	// (feedbackd_delivery_dials_total), EvictedPer1000 its connections
	// closed to stay within the open-file limit.
	DialsPer1000   float64 `json:"dials_per_1000"`
	EvictedPer1000 float64 `json:"evicted_per_1000"`
	// CPU seconds per 1,000 deliveries of what shares the machine in the
	// throughput phase: the receiver, redis-server, and this process
	// (kfake broker and producer).
	OthersCPUPer1000  map[string]float64 `json:"others_cpu_s_per_1000,omitempty"`
	AllocsPerDelivery float64            `json:"allocs_per_delivery"`
	BytesPerDelivery  float64            `json:"alloc_bytes_per_delivery"`
	// With --tls: TLS handshakes the receiver counted per 1,000 deliveries
	// (each round starts without connections), and those of them that
	// resumed a session.
	TLSHandshakesPer1000 float64 `json:"tls_handshakes_per_1000,omitempty"`
	TLSResumedPer1000    float64 `json:"tls_resumed_per_1000,omitempty"`
	// Connections is the most connections open at the receiver (nearly
	// all feedbackd's, in use and idle) at the last delivery of a round.
	Connections int `json:"connections_at_end_of_round"`
}

// onVsOff compares feedbackd with outcomes on and off: Throughput is the
// median, over the pairs of rounds (an off round and the on round after
// it), of the on round's ratio to the ceiling over the off round's,
// WorstThroughput the lowest; CPU is on's CPU per delivery over off's.
type onVsOff struct {
	Throughput      float64 `json:"throughput"`
	WorstThroughput float64 `json:"throughput_worst_pair"`
	CPU             float64 `json:"cpu_per_delivery"`
}

func printTable(r result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "machine\t%s\n", r.Machine)
	fmt.Fprintf(w, "scenario\t%s, %d tenants, receiver latency %gms, %d events, Redis %s, outcomes %s\n", r.Scenario, r.Tenants, r.ReceiverLatencyMS, r.Events, r.Redis, r.Outcomes)
	fmt.Fprintf(w, "endpoints\t%s, %d host(s)\n", map[bool]string{false: "HTTP", true: "HTTPS (TLS, the bench's CA)"}[r.TLS], r.Hosts)
	fmt.Fprintf(w, "open files\t%s\n", r.FileLimit)
	fmt.Fprintf(w, "ephemeral ports\t%s\n", r.Ports)
	if r.OutcomesOn != nil {
		fmt.Fprintf(w, "\trounds alternate off and on, each after a restart and a warm-up; the phases after them run with outcomes on\n")
	}
	fmt.Fprintf(w, "raw HTTP ceiling (net/http client)\t%.0f/s, best round\n", r.CeilingPerSec)
	fmt.Fprintf(w, "feedbackd's sender alone, no Kafka\t%.0f/s, best round\n", r.SenderCeilingPerSec)
	if r.OutcomesOn == nil {
		printFigures(w, "", r.figures)
	} else {
		printFigures(w, "outcomes off: ", r.figures)
		printFigures(w, "outcomes on: ", *r.OutcomesOn)
		fmt.Fprintf(w, "outcomes on / off\tthroughput %.3f median, %.3f worst pair of rounds; CPU per delivery %.3f\n",
			r.OnVsOff.Throughput, r.OnVsOff.WorstThroughput, r.OnVsOff.CPU)
	}
	for i, rd := range r.BadRounds {
		fmt.Fprintf(w, "round %d with the %s\t%.0f deliveries/s to the others; raw ceiling %.0f/s before, %.0f/s after: ratio %.2f\n", i+1, r.Scenario, rd.DeliveriesPerSec, rd.CeilingBefore, rd.CeilingAfter, rd.Ratio)
	}
	if r.OthersPerSec > 0 {
		fmt.Fprintf(w, "other tenants with the %s\t%.0f deliveries/s, median round; %.2f x healthy (median of each round's ratio over the healthy round's before it), %.2f worst pair\n", r.Scenario, r.OthersPerSec, r.OthersVsHealthy, r.OthersWorstPair)
	}
	fmt.Fprintf(w, "latency at %.0f/s (p50/p95/p99)\t%.1f / %.1f / %.1f ms%s\n", r.OfferedPerSec, r.P50MS, r.P95MS, r.P99MS, collections(r.GCs))
	fmt.Fprintf(w, "latency at %.0f/s, half feedbackd's rate\t%.1f / %.1f / %.1f ms%s\n", r.SustainedPerSec, r.SustainedP50MS, r.SustainedP95MS, r.SustainedP99MS, collections(r.SustainedGCs))
	fmt.Fprintf(w, "peak RSS\t%.0f MiB (GOMEMLIMIT %s)\n", r.PeakRSSMiB, cmp.Or(r.GOMEMLIMIT, "not set"))
	if m := r.MemoryAtPeak; m.Goroutines > 0 {
		fmt.Fprintf(w, "  at the largest heap and stacks\theap in use %.0f MiB, stacks %.0f MiB, %.0f goroutines, %.0f deliveries in flight\n", m.HeapMiB, m.StacksMiB, m.Goroutines, m.Inflight)
		if m.MostInflight >= 1000 { // below, the process's own memory is most of it
			fmt.Fprintf(w, "  per delivery in flight\t%.1f KB (the largest RSS sampled, %.0f MiB, over the most in flight, %.0f)\n", r.PerInflightKB, m.RSSMiB, m.MostInflight)
		}
	}
	if len(r.FeedbackdLog) == 0 {
		fmt.Fprintf(w, "feedbackd's log\tno warning or error (but the start-up ones of the bench's settings)\n")
	}
	for i, l := range r.FeedbackdLog {
		fmt.Fprintf(w, "%s\t%s\n", map[bool]string{true: "feedbackd's log"}[i == 0], l)
	}
	if r.Backlog > 0 {
		fmt.Fprintf(w, "backlog of %d\t%.0f deliveries/s, peak RSS %.0f MiB\n", r.Backlog, r.BacklogPerSec, r.BacklogPeakRSSMiB)
	}
	w.Flush()
}

// printFigures prints f's lines, each name after prefix.
func printFigures(w io.Writer, prefix string, f figures) {
	for i, rd := range f.Rounds {
		fmt.Fprintf(w, "%sround %d\t%.0f deliveries/s; raw ceiling %.0f/s before, %.0f/s after: ratio %.2f; sender alone %.0f/s, %.0f/s: %.2f\n",
			prefix, i+1, rd.DeliveriesPerSec, rd.CeilingBefore, rd.CeilingAfter, rd.Ratio, rd.SenderBefore, rd.SenderAfter, rd.SenderRatio)
	}
	fmt.Fprintf(w, "%sfeedbackd end to end\t%.0f deliveries/s, median round\n", prefix, f.DeliveriesPerSec)
	fmt.Fprintf(w, "%sratio to the raw ceiling\t%.2f median, %.2f worst round\n", prefix, f.Ratio, f.WorstRatio)
	fmt.Fprintf(w, "%sratio to feedbackd's sender alone\t%.2f median\n", prefix, f.SenderRatio)
	fmt.Fprintf(w, "%sCPU per 1,000 deliveries\t%.3f s\n", prefix, f.CPUPer1000)
	if f.SteadyCPUPer1000 > 0 {
		fmt.Fprintf(w, "%s  with every slot in use, no dial\t%.3f s (over %.0f %% of the deliveries: not a round's first and last --concurrency, nor a second in which feedbackd dialled)\n", prefix, f.SteadyCPUPer1000, 100*f.SteadyShare)
	}
	if len(f.OthersCPUPer1000) > 0 {
		names := slices.Sorted(maps.Keys(f.OthersCPUPer1000))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %.3f s", n, f.OthersCPUPer1000[n])
		}
		fmt.Fprintf(w, "%s  sharing the machine, per 1,000\t%s\n", prefix, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "%sallocations per delivery\t%.0f (%.0f bytes), whole process\n", prefix, f.AllocsPerDelivery, f.BytesPerDelivery)
	fmt.Fprintf(w, "%sconnections open at a round's end\t%d (most of any round; feedbackd's to the receiver, in use and idle)\n", prefix, f.Connections)
	fmt.Fprintf(w, "%sdials per 1,000 deliveries\t%.1f, %.1f connections evicted (feedbackd's; each round starts without connections)\n", prefix, f.DialsPer1000, f.EvictedPer1000)
	if f.TLSHandshakesPer1000 > 0 {
		fmt.Fprintf(w, "%sTLS handshakes per 1,000 deliveries\t%.1f (%.1f of them resumed); each round starts without connections\n", prefix, f.TLSHandshakesPer1000, f.TLSResumedPer1000)
	}
}

func logf(format string, a ...any) {
	// Formatted apart from the time, so that format may index its
	// arguments (%[1]s).
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// collections says how many garbage collections feedbackd ran while a
// latency phase was measured, if known.
func collections(n float64) string {
	if n < 0 {
		return ""
	}
	return fmt.Sprintf("; %.0f garbage collections in feedbackd meanwhile", n)
}
