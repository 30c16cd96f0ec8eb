package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/replay"
)

// recoveryBody is the body of POST .../recover.
type recoveryBody struct {
	Since    string   `json:"since"`
	Until    string   `json:"until"`
	Statuses []string `json:"statuses,omitempty"`
	DryRun   bool     `json:"dryRun,omitempty"`
	Rate     *float64 `json:"rate,omitempty"`
}

func webhooksRecover(s *settings) *cobra.Command {
	var (
		body   recoveryBody
		rate   float64
		detach bool
	)
	cmd := &cobra.Command{
		Use:   "recover ORG SANDBOX --since TIME --until TIME",
		Short: "Send a config's events of a time window again, from the input topics",
		Long: `recover starts a recovery job in feedbackd (POST
/v1/webhooks/ORG/SANDBOX/recover) and follows its progress. The job finds,
in every input topic, the offsets of --since and --until by record
timestamp, reads that range, keeps the events of this config (--status
keeps only those feedback statuses) and produces each again to its input
topic with its original webhook-id and a recover-job header. feedbackd then
delivers them again although they were delivered before: receivers
deduplicate on webhook-id; feedbackd's own dedupe window does not hold back
an explicit recovery, and delivers each event once per job.

Each run of this command is a new job. A job is resumable: if its instance
stops or dies, another instance (or the same, restarted) resumes it where
it stopped, without resending anything twice. Ctrl-C stops following, not
the job; follow it again with "feedbackctl webhooks recoveries ORG SANDBOX ID".

Retention bounds a recovery: only what the input topics still hold can be
resent. The summary says, per topic, the oldest record still held and the
part of the window that was not reachable.

Use --dry-run first: it counts what would be resent and resends nothing.
Times are RFC 3339 (2026-12-01T10:00:00Z) or durations ago (90m, 24h, 7d);
an --until in the future is now.`,
		Example: `  feedbackctl webhooks recover myImsOrg prod-1 --since 2026-12-01T10:00:00Z --until 2026-12-01T10:10:00Z --dry-run
  feedbackctl webhooks recover myImsOrg prod-1 --since 2026-12-01T10:00:00Z --until 2026-12-01T10:10:00Z --rate 200
  feedbackctl webhooks recover myImsOrg prod-1 --since 6h --until 5h --status bounce --status error
  feedbackctl webhooks recover myImsOrg prod-1 --since 24h --until 0s --detach -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("rate") {
				body.Rate = &rate
			}
			path := webhookPath(args[0], args[1])
			var p replay.Progress
			if err := s.api().do(cmd.Context(), "POST", path+"/recover", body, &p); err != nil {
				return flagError(err)
			}
			if detach {
				return printRecovery(cmd, s, p, 0)
			}
			return followRecovery(cmd, s, path, p)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&body.Since, "since", "", "start of the window (included): RFC 3339 time or a duration ago (90m, 24h, 7d)")
	fl.StringVar(&body.Until, "until", "", "end of the window (not included): as --since; a future time is now")
	fl.StringSliceVar(&body.Statuses, "status", nil, "only these feedback statuses: sent, delivered, bounce, error (repeatable; default all)")
	fl.BoolVar(&body.DryRun, "dry-run", false, "count what would be resent; resend nothing")
	fl.Float64Var(&rate, "rate", 0, "resend at most this many events per second (default: no limit)")
	fl.BoolVar(&detach, "detach", false, "print the started job and return; do not follow it")
	_ = cmd.MarkFlagRequired("since")
	_ = cmd.MarkFlagRequired("until")
	return cmd
}

// flagError names the flag of an API answer about a field of the body.
func flagError(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == 400 && ae.Field != "" {
		flag := map[string]string{"since": "--since", "until": "--until", "statuses": "--status", "rate": "--rate"}[ae.Field]
		if flag != "" {
			return fmt.Errorf("%s: %s", flag, ae.Message)
		}
	}
	return err
}

// followRecovery shows the job's progress until it ends. Ctrl-C stops
// following, not the job.
func followRecovery(cmd *cobra.Command, s *settings, path string, p replay.Progress) error {
	label, done := "recovery "+p.ID, "%d resent"
	if p.Request.DryRun {
		label, done = "dry run "+p.ID, "would resend %d"
	}
	d := newProgressDisplay(cmd.ErrOrStderr(), label, done)
	ctx := cmd.Context()
	var err error
	for err == nil && p.State == replay.StateRunning {
		d.update(p)
		select {
		case <-ctx.Done():
			d.finish()
			fmt.Fprintf(d.w, "stopped following; the job goes on in feedbackd: feedbackctl webhooks recoveries %s %s %s\n",
				p.Request.Org, p.Request.Sandbox, p.ID)
			return printRecovery(cmd, s, p, time.Since(d.start))
		case <-time.After(time.Second):
		}
		err = s.api().do(context.WithoutCancel(ctx), "GET", path+"/recoveries/"+p.ID, nil, &p)
	}
	if err != nil {
		d.finish()
		return err
	}
	d.update(p)
	d.finish()
	if err := printRecovery(cmd, s, p, time.Since(d.start)); err != nil {
		return err
	}
	switch p.State {
	case replay.StateFailed:
		return errors.New(p.Error)
	case replay.StateInterrupted:
		return errInterrupted
	}
	return nil
}

// printRecovery prints a job: as JSON with -o json, else a summary with
// what retention kept of the window.
func printRecovery(cmd *cobra.Command, s *settings, p replay.Progress, took time.Duration) error {
	w := cmd.OutOrStdout()
	if s.json() {
		return printJSON(w, p)
	}
	took = took.Round(100 * time.Millisecond)
	r := p.Request
	window := r.Since + " to " + r.Until
	switch {
	case p.State == replay.StateRunning:
		fmt.Fprintf(w, "recovery %s of %s/%s (%s) is running: %d read, %d resent so far; follow it with feedbackctl webhooks recoveries %s %s %s\n",
			p.ID, r.Org, r.Sandbox, window, p.Scanned, p.Replayed, r.Org, r.Sandbox, p.ID)
	case r.DryRun:
		fmt.Fprintf(w, "dry run of recovery %s of %s/%s (%s): %d records read, %d events of the config, %d would be resent, %d would be skipped; nothing was sent (%s)\n",
			p.ID, r.Org, r.Sandbox, window, p.Scanned, p.Matched, p.Replayed, p.Skipped, took)
	case p.State == replay.StateInterrupted:
		fmt.Fprintf(w, "recovery %s interrupted: %d resent so far (%d read); feedbackd resumes it where it stopped once an instance is up\n",
			p.ID, p.Replayed, p.Scanned)
	case p.State == replay.StateFailed:
		fmt.Fprintf(w, "recovery %s failed after %d resent: %s\n", p.ID, p.Replayed, p.Error)
	default:
		fmt.Fprintf(w, "recovery %s of %s/%s (%s) done: %d records read, %d events of the config, %d resent, %d skipped (%s)\n",
			p.ID, r.Org, r.Sandbox, window, p.Scanned, p.Matched, p.Replayed, p.Skipped, took)
	}
	if p.Skipped > 0 {
		fmt.Fprintln(w, "skipped: copies an earlier recovery made (their original is resent)")
	}
	printReach(w, p.Topics)
	return nil
}

// printReach says what each input topic still holds of the window.
func printReach(w io.Writer, reach []replay.TopicReach) {
	complete := true
	for _, t := range reach {
		if !t.Complete {
			complete = false
			fmt.Fprintf(w, "%s: retention removed records of the window: %s to %s was not (wholly) reachable; oldest record held %s\n",
				t.Topic, t.Unreachable.Since.Format(time.RFC3339), t.Unreachable.Until.Format(time.RFC3339), timeOrNone(t.Earliest))
		}
	}
	if complete && len(reach) > 0 {
		fmt.Fprintln(w, "every input topic still holds the whole window")
	}
}

func timeOrNone(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

func webhooksRecoveries(s *settings) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "recoveries ORG SANDBOX [ID]",
		Short: "List a config's recovery jobs, or show one",
		Long: `recoveries lists the config's recovery jobs of the last week, newest first,
or with a job id shows that job (its counts and what retention kept of its
window).`,
		Example: `  feedbackctl webhooks recoveries myImsOrg prod-1
  feedbackctl webhooks recoveries myImsOrg prod-1 rc-abcdefgh23456789 -o json`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := webhookPath(args[0], args[1])
			if len(args) == 3 {
				var p replay.Progress
				if err := s.api().do(cmd.Context(), "GET", path+"/recoveries/"+args[2], nil, &p); err != nil {
					return err
				}
				return printRecovery(cmd, s, p, p.UpdatedAt.Sub(p.StartedAt))
			}
			var out struct {
				Recoveries []replay.Progress `json:"recoveries"`
			}
			if err := s.api().do(cmd.Context(), "GET", path+"/recoveries?limit="+strconv.Itoa(limit), nil, &out); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			if len(out.Recoveries) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no recoveries")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tSINCE\tUNTIL\tSTATUSES\tREAD\tMATCHED\tRESENT\tSTARTED")
			for _, p := range out.Recoveries {
				statuses := strings.Join(p.Request.Statuses, ",")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.ID, p.State, p.Request.Since, p.Request.Until,
					orDash(statuses), p.Scanned, p.Matched, p.Replayed, p.StartedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "list at most this many (1 to 100)")
	return cmd
}
