package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/replay"
)

// errInterrupted makes feedbackctl exit 130, as after Ctrl-C.
var errInterrupted = errors.New("interrupted")

func dlqReplay(s *settings, topic *string) *cobra.Command {
	var f filterFlags
	var inputs []string
	var server bool
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-inject matching dead letters so feedbackd delivers them again, with the same webhook-id",
		Long: `replay re-injects the dead letters that pass the filters into the input topic
they came from. feedbackd then delivers each one again with its original
webhook-id (receivers deduplicate on it) and, if it fails again, dead-letters
it with its whole attempt history.

A replay is a job identified by its filters exactly as written (the same
flags are the same job; adding one makes a new job). Its progress is kept in
Kafka (the committed offset of consumer group <group>-replay-<job id>),
written in the same transaction as the re-injected records: after Ctrl-C or a
crash, running the same command again continues where it stopped. Once done,
the same command only replays dead letters that arrived since.

Each dead letter is re-injected at most once, by any job: a marker in
<dlq topic>.replayed, written in the same transaction, records it. An event
that fails again becomes a new dead letter, which can be replayed; the job
that replayed it leaves it alone (no loops), --again NAME starts a new job
that takes it.

Use --dry-run first: it counts what would be replayed and writes nothing.
--server runs the job inside feedbackd through the admin API instead
(POST /v1/dlq/replays) and follows its progress.`,
		Example: `  feedbackctl dlq replay --org myImsOrg --reason retries_exhausted --dry-run
  feedbackctl dlq replay --org myImsOrg --reason retries_exhausted --rate 200
  feedbackctl dlq replay --reason endpoint_disabled --org myImsOrg --sandbox prod-1 --since 24h
  feedbackctl dlq replay --org myImsOrg --server`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := f.filter(); err != nil {
				return err
			}
			label, done := "replay "+f.req.ID(), "%d replayed"
			if f.req.DryRun {
				label, done = "dry run "+f.req.ID(), "would replay %d"
			}
			d := newProgressDisplay(cmd.ErrOrStderr(), label, done)
			var p replay.Progress
			var err error
			if server {
				p, err = replayOnServer(cmd.Context(), s, f.req, d)
			} else if kopts, kerr := s.kafka(cmd.Context()); kerr != nil {
				err = kerr
			} else {
				p, err = replay.Run(cmd.Context(), kopts, f.req, replay.Options{
					DLQTopic:    *topic,
					InputTopics: inputs,
					GroupPrefix: s.v.GetString("group") + "-replay-",
					Progress:    d.update,
					Logger:      slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
				})
			}
			d.finish()
			if s.json() {
				if jerr := printJSON(cmd.OutOrStdout(), p); jerr != nil {
					return jerr
				}
			} else {
				printReplaySummary(cmd.OutOrStdout(), p, time.Since(d.start))
			}
			if err != nil {
				return err
			}
			if p.State == replay.StateInterrupted || p.State == replay.StateRunning {
				return errInterrupted
			}
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.req.DryRun, "dry-run", false, "count what would be replayed; write nothing")
	fl.Float64Var(&f.req.Rate, "rate", 0, "re-inject at most this many records per second (0: no limit)")
	fl.StringVar(&f.req.Again, "again", "", "start a new job although one with these filters ran, e.g. to replay what its replays dead-lettered again (any name)")
	fl.StringSliceVar(&inputs, "input-topics", []string{"feedback.sent", "feedback.delivered", "feedback.bounce", "feedback.error"},
		"input topics dead letters may be re-injected into (kafka.topics.input)")
	fl.BoolVar(&server, "server", false, "run the job inside feedbackd through the admin API")
	return cmd
}

// replayOnServer starts the job through the admin API (or finds it
// running) and follows it until it ends. Ctrl-C stops following, not the
// job.
func replayOnServer(ctx context.Context, s *settings, req replay.Request, d *progressDisplay) (replay.Progress, error) {
	api := s.api()
	var p replay.Progress
	err := api.do(ctx, "POST", "/v1/dlq/replays", req, &p)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == 409 { // running already: follow it
		err = api.do(ctx, "GET", "/v1/dlq/replays/"+req.ID(), nil, &p)
	}
	for err == nil && p.State == replay.StateRunning {
		d.update(p)
		select {
		case <-ctx.Done():
			fmt.Fprintf(d.w, "\nstopped following; the job goes on in feedbackd: GET /v1/dlq/replays/%s\n", p.ID)
			return p, nil
		case <-time.After(time.Second):
		}
		err = api.do(ctx, "GET", "/v1/dlq/replays/"+p.ID, nil, &p)
	}
	d.update(p)
	if err == nil && p.State == replay.StateFailed {
		err = errors.New(p.Error)
	}
	return p, err
}

func printReplaySummary(w io.Writer, p replay.Progress, took time.Duration) {
	took = took.Round(100 * time.Millisecond)
	switch {
	case p.State == replay.StateRunning: // --server, no longer followed
		fmt.Fprintf(w, "replay %s is still running in feedbackd (%d read, %d replayed so far); follow it with GET /v1/dlq/replays/%s or the same command\n",
			p.ID, p.Scanned, p.Replayed, p.ID)
	case p.Request.DryRun:
		fmt.Fprintf(w, "dry run of replay %s: %d dead letters read, %d match, %d would be replayed, %d would be skipped; nothing was written (%s)\n",
			p.ID, p.Scanned, p.Matched, p.Replayed, p.Skipped, took)
	case p.State == replay.StateInterrupted:
		fmt.Fprintf(w, "replay %s interrupted: %d replayed so far (%d read, %d matched, %d skipped); run the same command again to resume\n",
			p.ID, p.Replayed, p.Scanned, p.Matched, p.Skipped)
	case p.State == replay.StateFailed:
		fmt.Fprintf(w, "replay %s failed after %d replayed: %s; run the same command again to resume\n", p.ID, p.Replayed, p.Error)
	default:
		fmt.Fprintf(w, "replay %s done: %d dead letters read, %d matched, %d replayed, %d skipped (%s)\n",
			p.ID, p.Scanned, p.Matched, p.Replayed, p.Skipped, took)
	}
	if p.Skipped > 0 {
		fmt.Fprintln(w, "skipped: dead letters some job replayed already (each is re-injected once; if it failed again, its newer dead letter can be replayed), this job's own re-failures (--again starts a new job), and dead letters whose value was left out (warned above)")
	}
}

// progressDisplay shows a job's progress on stderr: a bar with an ETA on a
// terminal, a plain line every few seconds otherwise.
type progressDisplay struct {
	w     io.Writer
	tty   bool
	label string // names the job
	done  string // the count of what the job did, a format: "%d replayed", "would replay %d"
	start time.Time
	last  time.Time
	drawn bool
}

func newProgressDisplay(w io.Writer, label, done string) *progressDisplay {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressDisplay{w: w, tty: tty, label: label, done: done, start: time.Now()}
}

func (d *progressDisplay) update(p replay.Progress) {
	now := time.Now()
	every := 2 * time.Second
	if d.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(d.last) < every && p.State == replay.StateRunning {
		return
	}
	d.last = now
	pct, eta := 0.0, "?"
	if p.Total > 0 {
		pct = 100 * float64(min(p.Scanned, p.Total)) / float64(p.Total)
		if elapsed := now.Sub(d.start); p.Scanned > 0 && p.Scanned < p.Total {
			left := time.Duration(float64(elapsed) * float64(p.Total-p.Scanned) / float64(p.Scanned))
			eta = left.Round(time.Second).String()
		} else if p.Scanned >= p.Total {
			eta = "0s"
		}
	}
	rate := float64(p.Replayed) / max(now.Sub(d.start).Seconds(), 0.001)
	if !d.tty {
		if p.Scanned == 0 && p.State == replay.StateRunning {
			return // nothing to say yet
		}
		fmt.Fprintf(d.w, "%s: %d/%d read (%.0f%%), %d matched, %s, %.0f/s, ETA %s\n",
			d.label, p.Scanned, p.Total, pct, p.Matched, fmt.Sprintf(d.done, p.Replayed), rate, eta)
		return
	}
	const width = 30
	filled := int(pct / 100 * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	fmt.Fprintf(d.w, "\r%s [%s] %3.0f%% %d/%d read, %s, %.0f/s, ETA %s   ",
		d.label, bar, pct, p.Scanned, p.Total, fmt.Sprintf(d.done, p.Replayed), rate, eta)
	d.drawn = true
}

func (d *progressDisplay) finish() {
	if d.tty && d.drawn {
		fmt.Fprintln(d.w)
	}
}
