package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
	"github.com/feedbackd/feedbackd/pkg/replay"
)

func newDLQ(s *settings) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay the dead-letter topic",
		Long: `dlq reads the dead-letter topic (--topic, default feedback.dlq) directly from
Kafka, without a consumer group, so reading never moves feedbackd's
offsets. replay re-injects dead letters for delivery.`,
	}
	var topic string
	cmd.PersistentFlags().StringVar(&topic, "topic", "feedback.dlq", "dead-letter topic")
	cmd.AddCommand(dlqList(s, &topic), dlqShow(s, &topic), dlqStats(s, &topic), dlqReplay(s, &topic))
	return cmd
}

// filterFlags are the dead-letter filters shared by list, stats and replay.
type filterFlags struct{ req replay.Request }

func (f *filterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.req.Org, "org", "", "only this organisation (imsOrg)")
	fl.StringVar(&f.req.Sandbox, "sandbox", "", "only this sandbox id")
	fl.StringVar(&f.req.Channel, "channel", "", "only this channel: email or sms")
	fl.StringVar(&f.req.Status, "status", "", "only this feedback status: sent, delivered, bounce, error")
	fl.StringVar(&f.req.Reason, "reason", "", "only this reason: "+strings.Join(dlq.Reasons, ", "))
	fl.StringVar(&f.req.Since, "since", "", "failed at or after: RFC 3339 time or a duration ago (90m, 24h, 7d)")
	fl.StringVar(&f.req.Until, "until", "", "failed before: RFC 3339 time or a duration ago")
}

func (f *filterFlags) filter() (dlq.Filter, error) {
	flt, err := f.req.Filter(time.Now())
	var re *replay.RequestError
	if errors.As(err, &re) {
		return flt, fmt.Errorf("--%s: %s", re.Field, re.Message)
	}
	return flt, err
}

func dlqList(s *settings, topic *string) *cobra.Command {
	var f filterFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Print dead letters with their reasons, oldest failure first",
		Long: `list prints the dead letters that pass the filters, oldest failure first;
--limit keeps the oldest N (0: all). With -o json it prints one JSON object
per line, with every header, the key and the value. The whole topic is read.`,
		Example: `  feedbackctl dlq list
  feedbackctl dlq list --org myImsOrg --reason retries_exhausted --since 24h
  feedbackctl dlq list --limit 0 -o json | jq -r .webhookId`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := f.filter()
			if err != nil {
				return err
			}
			recs, err := scan(cmd.Context(), s, *topic, true, flt.Match)
			if err != nil {
				return err
			}
			all := len(recs)
			if limit > 0 && len(recs) > limit {
				recs = recs[:limit]
			}
			if s.json() {
				return printDLQJSON(cmd.OutOrStdout(), recs)
			}
			printDLQTable(cmd.OutOrStdout(), recs)
			if all > len(recs) {
				fmt.Fprintf(cmd.OutOrStdout(), "(the oldest %d of %d shown; --limit 0 shows all)\n", len(recs), all)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 100, "print at most this many (0: all)")
	return cmd
}

// scan reads the topic and returns the dead letters keep accepts (and, with
// unreadable, the records that are not readable dead letters), oldest
// failure first.
func scan(ctx context.Context, s *settings, topic string, unreadable bool, keep func(dlq.Record) bool) ([]dlq.Record, error) {
	var recs []dlq.Record
	kopts, err := s.kafka(ctx)
	if err != nil {
		return nil, err
	}
	err = dlq.Scan(ctx, kopts, topic, func(r dlq.Record) bool {
		if (r.Err != nil && unreadable) || (r.Err == nil && keep(r)) {
			recs = append(recs, r)
		}
		return true
	})
	slices.SortStableFunc(recs, func(a, b dlq.Record) int {
		if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return recs, err
}

var coordinates = regexp.MustCompile(`^(.+)/(\d+)/(\d+)$`)

func dlqShow(s *settings, topic *string) *cobra.Command {
	return &cobra.Command{
		Use:   "show WEBHOOK-ID|TOPIC/PARTITION/OFFSET",
		Short: "Print one dead letter (or every one of a webhook-id) with all headers and the body",
		Long: `show prints dead letters in full: every header (the dlq-* reason and history,
replay-* headers of replayed events, the sender's own) and the body, indented
in the sender's field order. Give a webhook-id to see every dead letter of
that event (one per failure, e.g. after a replay failed again), or a
topic/partition/offset (as list prints it) for one record.`,
		Example: `  feedbackctl dlq show msg_93c50caa3fca5644d8f0462cde5b65c1
  feedbackctl dlq show feedback.dlq/2/117 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var recs []dlq.Record
			var err error
			if m := coordinates.FindStringSubmatch(args[0]); m != nil {
				recs, err = readAt(cmd.Context(), s, m[1], m[2], m[3])
			} else {
				recs, err = scan(cmd.Context(), s, *topic, false, func(r dlq.Record) bool { return r.WebhookID == args[0] })
			}
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				return fmt.Errorf("no dead letter %s in %s", args[0], *topic)
			}
			if s.json() {
				return printDLQJSON(cmd.OutOrStdout(), recs)
			}
			for i, r := range recs {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				printDLQRecord(cmd.OutOrStdout(), r)
			}
			return nil
		},
	}
}

// readAt reads the record at topic/partition/offset.
func readAt(ctx context.Context, s *settings, topic, partition, offset string) ([]dlq.Record, error) {
	p, _ := strconv.ParseInt(partition, 10, 32)
	o, _ := strconv.ParseInt(offset, 10, 64)
	kopts, err := s.kafka(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {int32(p): kgo.NewOffset().At(o)},
	}))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, nil
		}
		var err error
		fs.EachError(func(_ string, _ int32, e error) { err = e })
		if err != nil {
			return nil, fmt.Errorf("read %s/%s/%s: %w", topic, partition, offset, err)
		}
		for _, r := range fs.Records() {
			if r.Offset == o {
				return []dlq.Record{dlq.FromKafka(r)}, nil
			}
			if r.Offset > o {
				return nil, nil // compacted or deleted
			}
		}
	}
}

func dlqStats(s *settings, topic *string) *cobra.Command {
	var f filterFlags
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count dead letters by reason, channel, organisation and age",
		Example: `  feedbackctl dlq stats
  feedbackctl dlq stats --since 7d -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := f.filter()
			if err != nil {
				return err
			}
			var st dlq.Stats
			now := time.Now()
			kopts, err := s.kafka(cmd.Context())
			if err != nil {
				return err
			}
			err = dlq.Scan(cmd.Context(), kopts, *topic, func(r dlq.Record) bool {
				if r.Err == nil && flt.Match(r) {
					st.Add(r, now)
				}
				return true
			})
			if err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printStats(cmd.OutOrStdout(), st)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printStats(w io.Writer, st dlq.Stats) {
	fmt.Fprint(w, plural(st.Total, "dead letter"))
	if st.Total > 0 {
		fmt.Fprintf(w, ", oldest %s, newest %s", st.Oldest.Format(time.RFC3339), st.Newest.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	section := func(title string, m map[string]int, order []string) {
		if len(m) == 0 {
			return
		}
		if order == nil { // most first
			order = slices.Collect(maps.Keys(m))
			slices.SortFunc(order, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
		}
		fmt.Fprintf(w, "\n%s\n", title)
		t := newTable(w, tabwriter.AlignRight)
		for _, k := range order {
			if m[k] > 0 {
				t.row("  "+strconv.Itoa(m[k]), "  "+k)
			}
		}
		t.flush()
	}
	section("by reason", st.ByReason, nil)
	section("by channel", st.ByChannel, nil)
	section("by organisation", st.ByOrg, nil)
	section("by age", st.ByAge, dlq.AgeBuckets)
}

func printDLQTable(w io.Writer, recs []dlq.Record) {
	t := newTable(w, 0)
	t.row("DEAD LETTER", "FAILED AT", "REASON", "ORG/SANDBOX", "STATUS", "WEBHOOK-ID", "ATTEMPTS", "LAST STATUS", "LAST ERROR")
	for _, r := range recs {
		if r.Err != nil {
			t.row(r.Coordinates(), "-", fmt.Sprintf("(unreadable: %v)", r.Err), "", "", "", "", "", "")
			continue
		}
		status := "-"
		if r.LastStatus != 0 {
			status = strconv.Itoa(r.LastStatus)
		}
		t.row(r.Coordinates(), r.FailedAt.Format(time.RFC3339), r.Reason, orDash(r.Org)+"/"+orDash(r.Sandbox),
			orDash(r.Status), r.WebhookID, r.Attempts, status, orDash(r.LastError))
	}
	t.flush()
	fmt.Fprintln(w, plural(len(recs), "dead letter"))
}

func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

func printDLQRecord(w io.Writer, r dlq.Record) {
	fmt.Fprintf(w, "dead letter %s\n", r.Coordinates())
	t := newTable(w, 0)
	t.row("  key:", string(r.Key))
	for _, h := range r.Headers {
		t.row("  "+h.Key+":", orDash(string(h.Value)))
	}
	t.flush()
	fmt.Fprintln(w, "  body:")
	var pretty bytes.Buffer
	switch {
	case json.Valid(r.Value): // indented, in the sender's field order
		_ = json.Indent(&pretty, r.Value, "    ", "  ")
		pretty.WriteString("\n")
		w.Write([]byte("    "))
	case r.ValueOmitted > 0:
		fmt.Fprintf(&pretty, "    (value of %d bytes left out; the original is at %s)\n", r.ValueOmitted, r.Source)
	default:
		fmt.Fprintf(&pretty, "    %q\n", r.Value)
	}
	_, _ = w.Write(pretty.Bytes())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDLQJSON(w io.Writer, recs []dlq.Record) error {
	enc := json.NewEncoder(w)
	for _, r := range recs {
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		out := map[string]any{
			"deadLetter": r.Coordinates(), "partition": r.Partition, "offset": r.Offset, "reason": r.Reason,
			"webhookId": r.WebhookID, "org": r.Org, "sandbox": r.Sandbox, "channel": r.Channel, "status": r.Status,
			"attempts": r.Attempts, "lastStatus": r.LastStatus, "lastError": r.LastError,
			"failedAt": r.FailedAt, "source": r.Source, "key": string(r.Key), "headers": headers,
		}
		if !r.FirstAttemptAt.IsZero() {
			out["firstAttemptAt"] = r.FirstAttemptAt
		}
		if json.Valid(r.Value) {
			out["value"] = json.RawMessage(r.Value)
		} else {
			out["value"] = string(r.Value)
		}
		if r.Err != nil {
			out["error"] = r.Err.Error()
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return nil
}
