package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/event"
)

func newProduce(s *settings) *cobra.Command {
	var topic string
	var allowInvalid bool
	cmd := &cobra.Command{
		Use:   "produce [FILE|-]",
		Short: "Publish feedback events from a JSON Lines or JSON file (or stdin) to the feedback topics",
		Long: `produce reads feedback events, one per line (JSON Lines) or as JSON
documents spanning lines (one pretty-printed event, sent compacted),
checks each against the event schema (schemas/feedback-event.schema.json)
and publishes it to feedback.<status> (feedback.sent, feedback.delivered, feedback.bounce or
feedback.error) with the key <imsOrg>/<sandboxId>.

Invalid lines are reported with their line numbers and not sent, and the
command exits 1; --allow-invalid sends them anyway (to --topic, or
feedback.sent), which is how you check that feedbackd dead-letters them.`,
		Example: `  feedbackctl produce config/examples/events.jsonl
  feedbackctl produce config/examples/event.json
  cat events.jsonl | feedbackctl produce --brokers kafka-1:9092 -
  feedbackctl produce --topic feedback.bounce bounces.jsonl
  echo '{"not":"an event"}' | feedbackctl produce --allow-invalid -`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, name, done, err := openInput(args)
			if err != nil {
				return err
			}
			defer done()
			return produce(cmd.Context(), s, in, name, topic, allowInvalid, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "send every line to this topic instead of feedback.<status>")
	cmd.Flags().BoolVar(&allowInvalid, "allow-invalid", false, "send lines that fail validation too")
	return cmd
}

// produce reports bad lines and progress on out, the summary on summary.
func produce(ctx context.Context, s *settings, in io.Reader, name, topic string, allowInvalid bool, summary, out io.Writer) error {
	kopts, err := s.kafka(ctx)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()

	var (
		mu       sync.Mutex
		sent     int
		failures []error
	)
	invalid, lines := 0, 0
	start, lastReport := time.Now(), time.Now()
	err = eachEvent(in, func(line int, raw []byte, ev *event.Event, perr error) error {
		lines = line
		rec := &kgo.Record{Topic: topic, Value: raw}
		switch {
		case perr != nil && !allowInvalid:
			invalid++
			fmt.Fprintf(out, "%s:%d: %v (not sent)\n", name, line, perr)
			return nil
		case perr != nil:
			invalid++
			if rec.Topic == "" {
				rec.Topic = "feedback.sent"
			}
		default:
			rec.Key = []byte(ev.Key())
			if rec.Topic == "" {
				if !event.Deliverable(ev.Status) {
					invalid++
					fmt.Fprintf(out, "%s:%d: status %q has no topic of its own; pass --topic (not sent)\n", name, line, ev.Status)
					return nil
				}
				rec.Topic = "feedback." + ev.Status
			}
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err)
				return
			}
			sent++
		})
		if time.Since(lastReport) > 2*time.Second {
			lastReport = time.Now()
			mu.Lock()
			fmt.Fprintf(out, "... %d lines read, %d produced\n", lines, sent)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if s.json() {
		if err := printJSON(summary, map[string]any{"file": name, "produced": sent, "invalid": invalid, "failed": len(failures)}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(summary, "produced %s from %s in %s", plural(sent, "event"), name, time.Since(start).Round(time.Millisecond))
		if invalid > 0 {
			fmt.Fprintf(summary, "; %s", plural(invalid, "invalid line"))
		}
		fmt.Fprintln(summary)
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d events could not be produced: %w", len(failures), errors.Join(failures[0]))
	}
	if invalid > 0 && !allowInvalid {
		return fmt.Errorf("%d invalid lines were not sent", invalid)
	}
	return nil
}
