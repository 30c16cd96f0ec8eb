package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/outcome"
)

// The delivery log: webhooks attempts, webhooks health, messages show.

// logFilters are the query parameters of GET .../attempts, as flags named
// like them (httpStatus: --http-status).
var logFilters = []struct{ flag, param, usage string }{
	{"type", "type", "record type: message.attempt, message.outcome, message.exhausted, endpoint.failing, endpoint.recovered, endpoint.disabled"},
	{"outcome", "outcome", "attempt outcome (success, retryable, rejected, error) or what a record settled with (delivered, retried, deferred, dead_lettered, ...)"},
	{"status", "status", "feedback status: sent, delivered, bounce, error"},
	{"http-status", "httpStatus", "HTTP status of the answer"},
	{"webhook-id", "webhookId", "webhook-id"},
	{"event-id", "eventId", "the event's eventId"},
	{"request-id", "requestId", "the event's requestId"},
	{"since", "since", "at or after: RFC 3339 time or a duration ago (90m, 24h, 3d)"},
	{"until", "until", "at or before: as --since"},
	{"limit", "limit", "records per page, 1 to 500"},
	{"cursor", "cursor", "continue after the page that printed this cursor"},
}

// flagOfParam names the flag of an API parameter, for a 400's field.
func flagOfParam(param string) string {
	for _, f := range logFilters {
		if f.param == param {
			return "--" + f.flag
		}
	}
	return param
}

// ago turns a duration ago (90m, 24h, 3d) into an RFC 3339 time; anything
// else goes to the API as given, which says what is wrong with it.
func ago(s string, now time.Time) string {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour).UTC().Format(time.RFC3339Nano)
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano)
	}
	return s
}

// namedFlag rewrites a 400 naming a query parameter to name the flag.
func namedFlag(err error) error {
	if ae, ok := err.(*apiError); ok && ae.Field != "" {
		ae.Field = flagOfParam(ae.Field)
	}
	return err
}

func webhooksAttempts(s *settings) *cobra.Command {
	vals, limit := make([]string, len(logFilters)), 0
	cmd := &cobra.Command{
		Use:   "attempts ORG SANDBOX",
		Short: "The config's recent attempts, outcomes and endpoint events, newest first",
		Long: `attempts prints the delivery log of a config: its recent attempts (with the
HTTP status, duration, error class and the first bytes of the answer), the
outcome each event settled with, and endpoint events, newest first. Filters
combine; a page ends with the --cursor of the next one.`,
		Example: `  feedbackctl webhooks attempts myImsOrg prod-1
  feedbackctl webhooks attempts myImsOrg prod-1 --type message.attempt --outcome retryable --since 1h
  feedbackctl webhooks attempts myImsOrg prod-1 --webhook-id evt-0001 -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			now := time.Now()
			for i, f := range logFilters {
				if !cmd.Flags().Changed(f.flag) {
					continue
				}
				v := vals[i]
				switch f.param {
				case "since", "until":
					if v = ago(v, now); !isRFC3339(v) {
						return fmt.Errorf("--%s %q: must be an RFC 3339 time or a duration ago (e.g. 1h)", f.flag, vals[i])
					}
				case "limit":
					v = strconv.Itoa(limit)
				}
				q.Set(f.param, v)
			}
			path := webhookPath(args[0], args[1]) + "/attempts"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var page struct {
				Records    []*outcome.Record `json:"records"`
				NextCursor string            `json:"nextCursor,omitempty"`
			}
			if err := s.api().do(cmd.Context(), "GET", path, nil, &page); err != nil {
				return namedFlag(err)
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), page)
			}
			printRecords(cmd.OutOrStdout(), page.Records, true)
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "\nmore: --cursor %s\n", page.NextCursor)
			}
			return nil
		},
	}
	for i, f := range logFilters {
		if f.param == "limit" {
			cmd.Flags().IntVar(&limit, f.flag, 50, f.usage)
			continue
		}
		cmd.Flags().StringVar(&vals[i], f.flag, "", f.usage)
	}
	return cmd
}

func isRFC3339(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

// printRecords prints outcome records as a table; withID adds the
// webhook-id column.
func printRecords(w io.Writer, recs []*outcome.Record, withID bool) {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no records")
		return
	}
	t := newTable(w, 0)
	head := []any{"TIME", "TYPE", "OUTCOME", "ATTEMPT", "HTTP", "MS", "ERROR", "STATUS", "RESPONSE"}
	if withID {
		head = append(head[:2], append([]any{"WEBHOOK-ID"}, head[2:]...)...)
	}
	t.row(head...)
	for _, r := range recs {
		ms := "-"
		if r.DurationMs != nil {
			ms = strconv.FormatFloat(*r.DurationMs, 'f', 1, 64)
		}
		what := r.Outcome
		if r.Reason != "" {
			what += " (" + r.Reason + ")"
		}
		if r.DisabledReason != "" {
			what = r.DisabledReason
		}
		resp := r.Response
		if len(resp) > 40 {
			resp = resp[:40] + "..."
		} else if r.ResponseTruncated {
			resp += "..."
		}
		cells := []any{r.Time.UTC().Format("2006-01-02T15:04:05.000Z"), strings.TrimPrefix(r.Type, "message."), orDash(what),
			orZero(r.Attempt), orZero(r.HTTPCode), ms, orDash(r.ErrorClass), orDash(r.Status), orDash(resp)}
		if withID {
			cells = append(cells[:2], append([]any{orDash(r.WebhookID)}, cells[2:]...)...)
		}
		t.row(cells...)
	}
	t.flush()
}

func orZero(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func webhooksHealth(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:   "health ORG SANDBOX",
		Short: "The endpoint's health: outcome counts, success rate, durations, breaker, disabled reason",
		Long: `health prints what the delivery log says about a config's endpoint: counts by
outcome over the last hour and day, the share of attempts that succeeded,
the median and 99th percentile attempt duration, the last success and the
last failure, the circuit breaker shared by the instances, and whether the
config is enabled (or why feedbackd disabled it).`,
		Example: `  feedbackctl webhooks health myImsOrg prod-1
  feedbackctl webhooks health myImsOrg prod-1 -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var h health
			if err := s.api().do(cmd.Context(), "GET", webhookPath(args[0], args[1])+"/health", nil, &h); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), h)
			}
			printHealth(cmd.OutOrStdout(), &h)
			return nil
		},
	}
}

// health is the answer of GET .../health.
type health struct {
	Org            string `json:"imsOrg"`
	Sandbox        string `json:"sandboxId"`
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabledReason,omitempty"`
	Breaker        *struct {
		State    string     `json:"state"`
		Until    *time.Time `json:"until,omitempty"`
		Failures int64      `json:"failures"`
	} `json:"breaker"`
	LastHour    counts `json:"lastHour"`
	LastDay     counts `json:"lastDay"`
	SuccessRate struct {
		LastHour *float64 `json:"lastHour"`
		LastDay  *float64 `json:"lastDay"`
	} `json:"successRate"`
	AttemptDurationMs struct {
		Samples int      `json:"samples"`
		P50     *float64 `json:"p50"`
		P99     *float64 `json:"p99"`
	} `json:"attemptDurationMs"`
	LastSuccess *time.Time `json:"lastSuccess"`
	LastFailure *struct {
		Time       time.Time `json:"time"`
		WebhookID  string    `json:"webhookId,omitempty"`
		Outcome    string    `json:"outcome"`
		ErrorClass string    `json:"errorClass,omitempty"`
		HTTPStatus int       `json:"httpStatus,omitempty"`
	} `json:"lastFailure"`
}

type counts struct {
	Attempts map[string]int64 `json:"attempts"`
	Outcomes map[string]int64 `json:"outcomes"`
	Events   map[string]int64 `json:"events"`
}

func printHealth(w io.Writer, h *health) {
	t := newTable(w, 0)
	state := "enabled"
	if !h.Enabled {
		state = "disabled"
		if h.DisabledReason != "" {
			state += ": " + h.DisabledReason
		}
	}
	t.row("config", h.Org+"/"+h.Sandbox+" ("+state+")")
	breaker := "unknown (Redis did not answer)"
	if b := h.Breaker; b != nil {
		switch {
		case b.State == "closed":
			breaker = fmt.Sprintf("closed, %d failures in a row", b.Failures)
		case b.Until != nil:
			breaker = b.State + " until " + b.Until.UTC().Format(time.RFC3339)
		default:
			breaker = b.State
		}
	}
	t.row("circuit breaker", breaker)
	t.row("success rate", rate(h.SuccessRate.LastHour)+" last hour, "+rate(h.SuccessRate.LastDay)+" last day")
	d := h.AttemptDurationMs
	t.row("attempt duration", fmt.Sprintf("p50 %s, p99 %s (%d attempts of the last day)", msOf(d.P50), msOf(d.P99), d.Samples))
	last := "none"
	if h.LastSuccess != nil {
		last = h.LastSuccess.UTC().Format(time.RFC3339)
	}
	t.row("last success", last)
	last = "none"
	if f := h.LastFailure; f != nil {
		last = fmt.Sprintf("%s %s %s %s %s", f.Time.UTC().Format(time.RFC3339), f.Outcome, orDash(f.ErrorClass), orZero(f.HTTPStatus), orDash(f.WebhookID))
	}
	t.row("last failure", last)
	t.flush()
	fmt.Fprintln(w)
	t = newTable(w, 0)
	t.row("COUNT", "LAST HOUR", "LAST DAY")
	for _, kind := range []struct {
		name       string
		hour, day  map[string]int64
		vocabulary []string
	}{
		{"attempts", h.LastHour.Attempts, h.LastDay.Attempts, []string{"success", "retryable", "rejected", "error"}},
		{"outcomes", h.LastHour.Outcomes, h.LastDay.Outcomes, []string{"delivered", "retried", "deferred", "dead_lettered", "dead_letter_lost", "skipped", "duplicate"}},
		{"events", h.LastHour.Events, h.LastDay.Events, []string{"message.exhausted", "endpoint.failing", "endpoint.recovered", "endpoint.disabled"}},
	} {
		for _, k := range kind.vocabulary {
			if kind.day[k] > 0 || kind.name == "attempts" {
				t.row(kind.name+" "+k, kind.hour[k], kind.day[k])
			}
		}
	}
	t.flush()
}

func rate(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r*100, 'f', 1, 64) + "%"
}

func msOf(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64) + "ms"
}

func newMessages(s *settings) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "messages",
		Aliases: []string{"message", "msg"},
		Short:   "Follow one event through its attempts (the delivery log)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show ORG SANDBOX WEBHOOK-ID",
		Short: "Every attempt of one event and its final outcome, oldest first",
		Long: `show prints every record the delivery log holds of one webhook-id, oldest
first: each attempt (HTTP status, duration, error class, the first bytes of
the answer), each outcome (retried, deferred, delivered, dead_lettered), and
then the outcome its delivery ended with, or that it is still being delivered.
A recovered or replayed event shows each of its deliveries. The log keeps
delivery_log.per_config records of a config for at most delivery_log.max_age:
an older event is not found (exit 1).

For example:
  $ feedbackctl messages show myImsOrg prod-1 evt-0932
  TIME                      TYPE     OUTCOME    ATTEMPT  HTTP  MS    ERROR     STATUS  RESPONSE
  2026-12-01T10:41:07.911Z  attempt  retryable  1        503   31.2  http_503  bounce  upstream busy
  2026-12-01T10:41:07.911Z  outcome  retried    1        503   -     http_503  bounce  -
  2026-12-01T10:41:13.020Z  attempt  success    2        200   40.3  -         bounce  ok
  2026-12-01T10:41:13.020Z  outcome  delivered  2        200   -     -         bounce  -

  evt-0932: delivered after 2 attempts, 2026-12-01T10:41:13Z`,
		Example: `  feedbackctl messages show myImsOrg prod-1 evt-0001
  feedbackctl messages show myImsOrg prod-1 evt-0001 -o json`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var m struct {
				WebhookID string            `json:"webhookId"`
				Records   []*outcome.Record `json:"records"`
				Final     *outcome.Record   `json:"final"`
			}
			path := webhookPath(args[0], args[1]) + "/messages/" + url.PathEscape(args[2])
			if err := s.api().do(cmd.Context(), "GET", path, nil, &m); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), m)
			}
			printRecords(cmd.OutOrStdout(), m.Records, false)
			final := "still being delivered (no final outcome yet)"
			if f := m.Final; f != nil {
				final = f.Outcome
				if f.Reason != "" {
					final += " (" + f.Reason + ")"
				}
				final += fmt.Sprintf(" after %d attempts, %s", f.Attempt, f.Time.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%s: %s\n", printable(m.WebhookID), printable(final))
			return nil
		},
	})
	return cmd
}
